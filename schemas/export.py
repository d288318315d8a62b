"""Write the committed JSON Schemas of every event and of the adapter contract: ``python -m schemas.export``.

``tests/unit/test_contracts.py`` regenerates them in memory and fails when the committed
files differ, so a model change without a re-export cannot land.
"""

import json
from pathlib import Path

from schemas.adapters import ADAPTER_MODELS
from schemas.events import EVENT_ADAPTER, EVENT_TYPES
from schemas.legacy import LEGACY

JSON_DIR = Path(__file__).parent / "json"


def rendered() -> dict[str, str]:
    """File name -> JSON text, for every version of every event (earlier versions stay published:
    their messages may still be on a topic) and for the union of the current ones."""
    files: dict[str, str] = {}
    # Legacy models sorted by (type, version): an event may have more than one earlier version.
    legacy = [(t, m) for (t, _), m in sorted(LEGACY.items(), key=lambda item: item[0])]
    for event_type, event_model in sorted(EVENT_TYPES.items()) + legacy:
        version = event_model.model_fields["schema_version"].default
        schema = event_model.model_json_schema(mode="serialization")
        files[f"{event_type}.v{version}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    union = EVENT_ADAPTER.json_schema(mode="serialization")
    files["events.schema.json"] = json.dumps(union, indent=2, sort_keys=True) + "\n"
    # The adapter contract: what a provider's system receives (webhook, portal) and answers.
    for name, model in ADAPTER_MODELS.items():
        schema = model.model_json_schema(mode="serialization")
        files[f"adapter.{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (JSON_DIR / name).write_text(text)
        print(f"wrote schemas/json/{name}")


if __name__ == "__main__":
    main()
