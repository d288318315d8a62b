"""Message templates: Jinja2 files versioned in ``templates/<language>/<message>[.large-print].txt.j2``.

A template's first line is ``Subject: ...``, then a blank line, then the body, in plain English.
The recipient's language and large-print preference are honoured where such a template exists;
where none does, the nearest one is used (the language's base, then English; the standard
variant) and a note says so, recorded with the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

DEFAULT_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
LARGE_PRINT = "large-print"


@dataclass(frozen=True)
class Rendered:
    template: str  # e.g. en/placement_person.large-print.txt.j2
    subject: str
    body: str
    large_print: bool
    notes: tuple[str, ...]


class Templates:
    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        # Plain text, so no HTML autoescaping; a missing variable is an error, not a blank.
        self.env = Environment(
            loader=FileSystemLoader(directory), undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
        )

    def render(
        self, message: str, context: dict, *, language: str = DEFAULT_LANGUAGE, large_print: bool = False
    ) -> Rendered:
        notes = []
        languages = list(dict.fromkeys([language, language.split("-")[0], DEFAULT_LANGUAGE]))
        variants = [f".{LARGE_PRINT}", ""] if large_print else [""]
        for lang in languages:
            for variant in variants:
                name = f"{lang}/{message}{variant}.txt.j2"
                try:
                    template = self.env.get_template(name)
                except TemplateNotFound:
                    continue
                if lang != language:
                    notes.append(f"no {message} template in language {language!r}; sent in {lang!r}")
                if large_print and not variant:
                    notes.append(f"large print asked for; no large-print {message} template, standard sent")
                subject, body = _split(template.render(**context), name)
                return Rendered(name, subject, body, bool(variant), tuple(notes))
        raise LookupError(f"no template for message {message!r}")


def _split(text: str, name: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {name} must start with 'Subject: '")
    return first.removeprefix("Subject: ").strip(), rest.strip() + "\n"
