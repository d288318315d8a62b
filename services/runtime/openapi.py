"""OpenAPI documents of the services' HTTP APIs, committed under ``docs/openapi/`` so that a
provider's developer can build an adapter from the repository alone (the provider API is
``/me/...`` in ``providers.json``). ``python -m services.runtime.openapi`` writes them; a test
fails when they drift. Each service also serves its own at ``/openapi.json``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def rendered() -> dict[str, str]:
    from services.runtime.settings import SERVICES, load

    files = {}
    for name in SERVICES:
        _, app = importlib.import_module(f"services.{name}.app").build(load(name))
        files[f"{name}.json"] = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    return files


if __name__ == "__main__":
    from services.runtime.asyncapi import write_documents

    write_documents(DOCS, rendered())
