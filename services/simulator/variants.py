"""The policies a simulation compares: the built-in ones, and variants of them from YAML or the
command line; the demand and market parameters from ``key=value`` pairs."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from schemas.vocabulary import Band, Urgency
from services.brokerage import domain
from services.simulator import simulation

BUILT_IN = {
    "prime-supplementary": simulation.Policy("prime-supplementary", domain.PRIME_SUPPLEMENTARY),
    "open-framework": simulation.Policy("open-framework", domain.OPEN_FRAMEWORK),
    "framework": simulation.Policy("framework", simulation.FRAMEWORK_POLICY),
}


def policy_from(entry: dict) -> simulation.Policy:
    """A variant from YAML/CLI: ``{name, allocation, windows_hours, quality_weights, rates, reoffer_hours}``;
    what it leaves out is the built-in policy's (``based_on``, default the allocation's own).
    ValueError for a key it does not know or a policy that is not built in."""
    entry = dict(entry)
    unknown = set(entry) - {
        "name",
        "based_on",
        "allocation",
        "windows_hours",
        "quality_weights",
        "rates",
        "reoffer_hours",
    }
    if unknown:
        raise ValueError(f"unknown variant keys: {', '.join(sorted(unknown))}")
    based_on = entry.pop("based_on", None) or entry.get("allocation") or "framework"
    for key, name in (("based_on", based_on), ("allocation", entry.get("allocation", based_on))):
        if name not in BUILT_IN:
            raise ValueError(f"unknown policy {name!r} in a variant's {key} (one of {', '.join(BUILT_IN)})")
    base = BUILT_IN[based_on]
    changes: dict = {"name": entry.pop("name")}
    if "allocation" in entry:
        changes["allocation"] = entry.pop("allocation")
    if "windows_hours" in entry:
        changes["windows_hours"] = base.windows_hours | {
            Urgency(k): float(v) for k, v in entry.pop("windows_hours").items()
        }
    if "quality_weights" in entry:
        changes["quality_weights"] = dataclasses.replace(
            base.quality_weights, **{k: Decimal(str(v)) for k, v in entry.pop("quality_weights").items()}
        )
    if "rates" in entry:
        changes["rates"] = {Band(k): Decimal(str(v)) for k, v in entry.pop("rates").items()}
    if "reoffer_hours" in entry:
        changes["reoffer_hours"] = float(entry.pop("reoffer_hours"))
    return dataclasses.replace(base, **changes)


Params = TypeVar("Params", bound="DataclassInstance")


def assignments(pairs: list[str], cls: type[Params]) -> Params:
    """``key=value`` pairs into a parameters dataclass, typed by its defaults (ValueError for a key
    the dataclass does not have or a value of the wrong type)."""
    values: dict[str, object] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields or not raw:
            raise ValueError(f"{pair!r}: expected one of {', '.join(fields)} as key=value")
        values[key] = type(getattr(cls(), key))(raw)
    return cls(**values)


def parameters_help() -> str:
    """Every demand and market parameter with its default, one a line."""
    lines = []
    for cls in (simulation.DemandParams, simulation.MarketParams):
        lines.append(f"{cls.__name__} ({(cls.__doc__ or '').split('.')[0].strip()}):")
        for f in dataclasses.fields(cls):
            lines.append(f"  {f.name} = {getattr(cls(), f.name)}")
    return "\n".join(lines)
