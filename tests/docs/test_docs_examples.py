"""Every example in the docs runs (FastStream tests its docs' snippets the same way).

Each fenced block of ``docs/**/*.md`` and ``README.md`` is one test:

- ``python``: run with this interpreter in a subprocess, from the repository's root;
- ``bash``: run with ``bash -e -o pipefail`` from the repository's root; ``curl`` fails on an
  HTTP error (``--fail-with-body``) unless the command prints the status itself (``-w``);
- ``json``, ``yaml``: parsed;
- ``text`` (output shown) and ``mermaid`` (a diagram): not examples, nothing to run;
- any other language, or none: a failure - the block must say what it is.

An HTML comment on the line above a block changes how it runs:

- ``<!-- docs-example: needs stack -->``: the services run as processes on the real Kafka
  and PostgreSQL (once for the module, with the session's database and topic namespace); the
  block gets their addresses, tokens and infrastructure in its environment, and the services'
  usual addresses in its text (``127.0.0.1:8001`` to ``8003``) point at the running ones;
- ``<!-- docs-example: skip "reason" -->``: not run, for the reason given (a reason is required).

The page ``docs/testing.md`` says the same for the docs' authors.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import start_stack, stop_stack

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
RUN = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
PARSE = {"json", "yaml"}
INERT = {"text", "mermaid"}
# The services' usual addresses (deploy/services.sh), as the docs write them.
USUAL_PORTS = {"brokerage": 8001, "providers": 8002, "notifications": 8003, "reporting": 8005}
USUAL_INTERNAL_PORTS = {
    "brokerage": 9001,
    "providers": 9002,
    "notifications": 9003,
    "reporting": 9005,
}  # their internal listeners
TIMEOUT_SECONDS = 120
# Blocks that start, stop or reset an installation's own processes are never run from a test:
# they would act on the machine's Kafka, PostgreSQL and services, not the test's.
INSTALLATION = re.compile(r"deploy/(demo|test|up|down|setup|services|kafka|postgres)\.sh")

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)
DIRECTIVE = re.compile(r"<!--\s*docs-example:\s*(?P<what>.*?)\s*-->\s*$")
# `bash` shell function put before every bash block: a curl that fails on an HTTP error.
CURL = (
    'curl() { case " $* " in *" -w "*|*" --write-out "*) command curl "$@" ;; '
    '*) command curl --fail-with-body -sS "$@" ;; esac; }\n'
)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    directive: str | None

    @property
    def id(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        directive = DIRECTIVE.match(before)
        language = match["info"].strip().split(" ")[0].strip("{}.").lower() if match["info"].strip() else ""
        body = "\n".join(
            row[len(match["indent"]) :] if row.startswith(match["indent"]) else row for row in match["body"].split("\n")
        )
        found.append(Block(page, line, language, body, directive["what"] if directive else None))
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def test_the_docs_have_examples_to_run():
    """The collector finds the blocks (a broken pattern would otherwise pass every page)."""
    runnable = [b for b in BLOCKS if b.language in RUN and b.directive != "skip"]
    assert len(BLOCKS) >= 20 and len(runnable) >= 10, [b.id for b in BLOCKS]


@pytest.fixture(scope="module")
def docs_stack(database_url, infra, namespace, artifacts, identity):
    """The three services as processes, for the blocks that need them running."""
    stack = start_stack(database_url, infra.kafka, namespace, artifacts / "docs-logs")
    yield stack
    stop_stack(stack)


def environment(stack) -> dict[str, str]:
    env = dict(os.environ)
    if stack is not None:
        env |= {
            "DATABASE_URL": stack.env["DATABASE_URL"],
            "KAFKA_BOOTSTRAP_SERVERS": stack.env["KAFKA_BOOTSTRAP_SERVERS"],
            "HOMECARE_NAMESPACE": stack.env["HOMECARE_NAMESPACE"],
            "BROKERAGE_URL": stack.url("brokerage"),
            "PROVIDERS_URL": stack.url("providers"),
            "NOTIFICATIONS_URL": stack.url("notifications"),
            "REPORTING_URL": stack.url("reporting"),  # where `homecare kpis` asks
        }  # and the identity provider's settings, which the identity fixture put in os.environ
    return env


def pointed_at(body: str, stack) -> str:
    """The block's text with the services' usual addresses replaced by the running ones'."""
    if stack is None:
        return body
    for service, port in USUAL_PORTS.items():
        body = body.replace(f"127.0.0.1:{port}", f"127.0.0.1:{stack.ports[service]}")
        body = body.replace(f"localhost:{port}", f"127.0.0.1:{stack.ports[service]}")
    for service, port in USUAL_INTERNAL_PORTS.items():
        body = body.replace(f"127.0.0.1:{port}", f"127.0.0.1:{stack.internal_ports[service]}")
    return body


def run(block: Block, stack) -> subprocess.CompletedProcess:
    """Run the block in a session of its own, so that nothing it started outlives a timeout."""
    body = pointed_at(block.body, stack)
    if RUN[block.language] == "python":
        command = [sys.executable, "-c", body]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", CURL + body]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\n(killed after {TIMEOUT_SECONDS} s)"
        return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example(block: Block, request):
    directive = block.directive
    if directive is not None and directive.startswith("skip"):
        reason = directive[len("skip") :].strip()
        assert len(reason) > 2 and reason[0] == reason[-1] == '"', (
            f'{block.id}: a skipped block says why: <!-- docs-example: skip "reason" -->'
        )
        pytest.skip(f"{block.id}: {reason.strip(chr(34))}")
    assert directive in (None, "needs stack"), f"{block.id}: unknown directive {directive!r}"
    if block.language in INERT:
        assert directive is None, f"{block.id}: a {block.language} block is not run; it takes no directive"
        return
    if block.language in PARSE:
        (json.loads if block.language == "json" else yaml.safe_load)(block.body)
        return
    assert block.language in RUN, (
        f"{block.id}: a fenced block is python, bash, json, yaml, text (output) or mermaid, "
        f"not {block.language or 'unlabelled'!r}"
    )
    assert not INSTALLATION.search(block.body), (
        f"{block.id} starts, stops or resets the installation (deploy/*.sh): mark it skip, with the reason"
    )
    stack = request.getfixturevalue("docs_stack") if directive == "needs stack" else None
    done = run(block, stack)
    assert done.returncode == 0, (
        f"{block.id} exited with {done.returncode}\n--- block ---\n{block.body}\n"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    )


# Repository paths named in the docs' code spans: a file moved or renamed leaves its page wrong.
PATH = re.compile(r"`((?:services|schemas|deploy|tests|docs)/[\w./-]*[\w/])(?:::\w+)?`")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_files_a_page_names_exist(page: Path):
    missing = sorted({m for m in PATH.findall(page.read_text()) if not (ROOT / m).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names files that are not in the repository: {missing}"


def test_a_block_neither_runnable_nor_marked_fails(tmp_path):
    """The rules above, on a page made for the purpose."""
    page = tmp_path / "page.md"
    page.write_text(
        "```\nunlabelled\n```\n\n"
        '<!-- docs-example: skip "installs things" -->\n```bash\nexit 1\n```\n\n'
        "<!-- docs-example: needs stack -->\n```python\nprint(1)\n```\n"
    )
    unlabelled, skipped, stacked = blocks_of(page)
    assert (unlabelled.language, unlabelled.directive) == ("", None)
    assert (skipped.language, skipped.directive) == ("bash", 'skip "installs things"')
    assert (stacked.language, stacked.directive, stacked.body) == ("python", "needs stack", "print(1)\n")
    with pytest.raises(AssertionError, match="not 'unlabelled'"):
        test_example(unlabelled, request=None)
    with pytest.raises(pytest.skip.Exception, match="installs things"):
        test_example(skipped, request=None)
    failing = Block(page, 1, "bash", "curl http://127.0.0.1:1/nowhere\n", None)
    with pytest.raises(AssertionError, match="exited with"):
        test_example(failing, request=None)
