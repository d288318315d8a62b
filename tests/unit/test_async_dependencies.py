"""Every route and every dependency of every app is a coroutine function.

FastAPI runs a plain ``def`` endpoint or dependency in a worker thread, once per request: the
benchmark's profile found ``principal_of`` doing so on every API call (a thread hop, a lock and a
queue each time). Nothing here blocks, so nothing needs the thread."""

import importlib
import inspect

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute

from services.runtime.settings import SERVICES, load


def sync_callables(dependant: Dependant, seen: set[int] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    found = []
    call = dependant.call
    if call is not None and id(call) not in seen:
        seen.add(id(call))
        target = call if inspect.isfunction(call) or inspect.ismethod(call) else getattr(call, "__call__", call)  # noqa: B004
        if not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):  # an SSE stream: async too
            found.append(getattr(call, "__qualname__", repr(call)))
    for sub in dependant.dependencies:
        found += sync_callables(sub, seen)
    return found


def api_routes(routes: list) -> list[APIRoute]:
    """The app's routes, through included routers (FastAPI 0.16x includes them lazily)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


@pytest.mark.parametrize("service", [*SERVICES, "console"])
def test_no_route_or_dependency_runs_in_a_worker_thread(service):
    _, app = importlib.import_module(f"services.{service}.app").build(load(service))
    routes = api_routes(app.routes)
    assert len(routes) > 5  # the routes were found: this test checks something
    offenders = {
        f"{sorted(route.methods or ())} {route.path}: {name}"
        for route in routes
        for name in sync_callables(route.dependant)
    }
    app_wide = [get_dependant(path="", call=d.dependency) for d in app.router.dependencies if d.dependency]
    offenders |= {f"app-wide: {name}" for dependant in app_wide for name in sync_callables(dependant)}
    assert not offenders
