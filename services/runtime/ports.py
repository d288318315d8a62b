"""The services' API ports on one machine, apart from the settings so that the command line can
read them without importing pydantic-settings (half a second of a command's start-up)."""

from __future__ import annotations

import os

# Each service's API port unless ``<SERVICE>_HTTP_PORT`` says otherwise (the deploy scripts' too).
DEFAULT_PORTS = {"brokerage": 8001, "providers": 8002, "notifications": 8003, "console": 8004, "reporting": 8005}


def local_url(service: str) -> str:
    """A service's address on this machine, for the command line's defaults: its API port as
    ``<SERVICE>_HTTP_PORT`` sets it for the deploy scripts, else its default port (8001-8005).
    The ``<SERVICE>_URL`` option of each command still wins (found by a new user: commands had used
    8002 and 8005 with the stack on other ports). KeyError for a name that is no service."""
    port = os.environ.get(f"{service.upper()}_HTTP_PORT") or DEFAULT_PORTS[service]
    return f"http://127.0.0.1:{port}"


def local_url_shown(service: str) -> str:
    """How a command's help shows :func:`local_url`'s default (it is read when the command runs)."""
    return f"http://127.0.0.1:${service.upper()}_HTTP_PORT, else port {DEFAULT_PORTS[service]}"
