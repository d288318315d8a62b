"""The framework's reference data: zones, rate cards, allocation policies, the provider seed.

Read from ``deploy/reference/`` (or ``HOMECARE_REFERENCE_DIR``). It is data, not code: zones
are re-drawn and rates change every year, so a new file (or a new effective-dated entry)
changes the system without a redeploy of code.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Generic, Literal, TypeVar

import yaml

from schemas.vocabulary import Band
from services.runtime.logging import get_logger

log = get_logger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "reference"


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    size: str
    places: tuple[str, ...]
    postcode_districts: tuple[str, ...]
    adjacent: tuple[str, ...]


@dataclass(frozen=True)
class RateCard:
    version: str
    effective_from: dt.date
    rates: dict[Band, Decimal]


@dataclass(frozen=True)
class PolicyEntry:
    effective_from: dt.date
    default: str
    zones: dict[str, str]


@dataclass(frozen=True)
class Framework:
    version: str
    zones: dict[str, Zone]
    rate_cards: tuple[RateCard, ...]
    policies: tuple[PolicyEntry, ...]
    no_prime_zones: frozenset[str]
    quality_weights: dict[str, Decimal]

    def rate_card_on(self, day: dt.date) -> RateCard:
        """The newest card whose start date has come."""
        current = [c for c in self.rate_cards if c.effective_from <= day]
        if not current:
            raise LookupError(f"no rate card in force on {day}")
        return max(current, key=lambda c: c.effective_from)

    def policy_on(self, zone: str, day: dt.date) -> str:
        current = [p for p in self.policies if p.effective_from <= day]
        if not current:
            raise LookupError(f"no allocation policy in force on {day}")
        entry = max(current, key=lambda p: p.effective_from)
        return entry.zones.get(zone, entry.default)

    def zone_of_district(self, district: str) -> list[str]:
        return [z.id for z in self.zones.values() if district in z.postcode_districts]


def reference_dir() -> Path:
    return Path(os.environ.get("HOMECARE_REFERENCE_DIR", DEFAULT_DIR))


RECHECK_SECONDS = 1.0
"""How often a reference file is looked at again for an edit: an edit applies to decisions taken
from at most this long after it is saved. (A look per decision - a path, a stat and a cache probe,
several times per package - was a few percent of the brokerage's CPU under load.)"""


def _mtime_ns(path: Path) -> int:
    """The file's modification time. Raises ``OSError`` when the file cannot be read."""
    return path.stat().st_mtime_ns


T = TypeVar("T")


class ReferenceFile(Generic[T]):
    """One file of reference data (``deploy/reference/<name>``, or ``HOMECARE_REFERENCE_DIR``'s) as
    it says now. Cheap to call on every decision (a stat at most every :data:`RECHECK_SECONDS`, then
    a cache): an edit applies without a restart. A file edited into something invalid (``parse``
    raises) is refused with an error in the log, and the last good version stays in force, so a typo
    cannot stop a service. ``shipped``: where a folder without the file falls back to the shipped
    one - "never", "default-folder" (only the installation's folder from ``HOMECARE_REFERENCE_DIR``,
    not one passed in, e.g. by a test) or "always"."""

    def __init__(
        self,
        name: str,
        parse: Callable[[dict], T],
        *,
        what: str,
        shipped: Literal["never", "default-folder", "always"] = "never",
    ) -> None:
        self.name, self.parse, self.what, self.shipped = name, parse, what, shipped
        self.last_good: dict[Path, T] = {}
        self._recent: dict[Path | str, tuple[float, T]] = {}  # folder (or the variable's value) -> (monotonic, value)
        self._parsed = lru_cache(maxsize=8)(self._parse)

    def _parse(self, path: Path, mtime_ns: int) -> T:
        value = self.parse(yaml.safe_load(path.read_text()))
        was = self.last_good.get(path)
        if was is not None and getattr(was, "version", None) != getattr(value, "version", None):
            log.info("reference data reloaded", path=str(path), version=getattr(value, "version", None))
        self.last_good[path] = value
        return value

    def load(self, folder: Path | None = None) -> T:
        # What was read less than RECHECK_SECONDS ago is answered without making a path: building
        # and hashing Path objects was about 2% of the brokerage's CPU under load.
        now = time.monotonic()
        key = folder if folder is not None else os.environ.get("HOMECARE_REFERENCE_DIR", "")
        recent = self._recent.get(key)
        if recent is not None and now - recent[0] < RECHECK_SECONDS:
            return recent[1]
        value = self._load(folder)
        self._recent[key] = (now, value)
        return value

    def _load(self, folder: Path | None) -> T:
        path = (folder or reference_dir()).joinpath(self.name)
        try:
            try:
                mtime_ns = _mtime_ns(path)  # a stat at most every RECHECK_SECONDS (load's cache)
            except FileNotFoundError:
                if not (self.shipped == "always" or (self.shipped == "default-folder" and folder is None)):
                    raise
                path = DEFAULT_DIR / self.name
                mtime_ns = _mtime_ns(path)
            return self._parsed(path, mtime_ns)
        except Exception as exc:
            last_good = self.last_good.get(path)
            if last_good is None:
                raise
            log.error(
                f"{self.what} could not be read; keeping the last good version",
                path=str(path),
                version=getattr(last_good, "version", None),
                error=repr(exc),
            )
            return last_good


def load_framework(folder: Path | None = None) -> Framework:
    """``framework.yaml`` as it says now: zones, rate cards, allocation policies (a new rate card or
    a zone's policy applies without a restart, to decisions from a second after it is saved)."""
    return _FRAMEWORK.load(folder)


def _parse_framework(raw: dict) -> Framework:
    zones = {
        z["id"]: Zone(
            z["id"], z["name"], z["size"], tuple(z["places"]), tuple(z["postcode_districts"]), tuple(z["adjacent"])
        )
        for z in raw["zones"]
    }
    for zone in zones.values():
        for other in zone.adjacent:
            if other not in zones or zone.id not in zones[other].adjacent:
                raise ValueError(f"adjacency of {zone.id} and {other} must be declared both ways")
    cards = tuple(
        RateCard(str(c["version"]), c["effective_from"], {Band(b): Decimal(str(r)) for b, r in c["rates"].items()})
        for c in raw["rate_cards"]
    )
    policies = tuple(
        PolicyEntry(p["effective_from"], p["default"], dict(p.get("zones") or {})) for p in raw["allocation_policies"]
    )
    weights = {k: Decimal(str(v)) for k, v in (raw.get("quality_weights") or {}).items()}
    framework = Framework(
        str(raw["version"]), zones, cards, policies, frozenset(raw.get("no_prime_zones", [])), weights
    )
    return framework


_FRAMEWORK = ReferenceFile("framework.yaml", _parse_framework, what="reference data")


@dataclass(frozen=True)
class SchemeOfDelegation:
    """How far above the band rate each role may approve spending (per cent of the band rate;
    None: no limit). A role not named may approve nothing above the rate."""

    version: str
    limits_percent: dict[str, Decimal | None]
    # Two approvals (``second_approver``, decision record 0123): an approver below the bid's limit may
    # record the first approval; bids beyond ``two_approvals_above_percent`` always take two. A file
    # without the section keeps one approval within the limit, as before.
    first_approval_below_limit: bool = False
    two_approvals_above_percent: Decimal | None = None


def load_delegation(folder: Path | None = None) -> SchemeOfDelegation:
    """``delegation.yaml`` as it says now. An installation's reference folder made before the scheme
    existed uses the shipped ``deploy/reference/delegation.yaml``."""
    return _DELEGATION.load(folder)


def _parse_delegation(raw: dict) -> SchemeOfDelegation:
    limits: dict[str, Decimal | None] = {}
    for role, limit in (raw["above_rate_approval_limits_percent"] or {}).items():
        if limit is not None and Decimal(str(limit)) < 0:
            raise ValueError(f"the limit of {role} is negative")
        limits[str(role)] = None if limit is None else Decimal(str(limit))
    second = raw.get("second_approver") or {}
    unknown = set(second) - {"first_approval_below_limit", "two_approvals_above_percent"}
    if unknown:
        raise ValueError(f"second_approver has unknown settings: {', '.join(sorted(unknown))}")
    below = second.get("first_approval_below_limit", False)
    if not isinstance(below, bool):
        raise ValueError("second_approver.first_approval_below_limit is true or false")
    always = second.get("two_approvals_above_percent")
    if always is not None and Decimal(str(always)) < 0:
        raise ValueError("second_approver.two_approvals_above_percent is negative")
    return SchemeOfDelegation(str(raw["version"]), limits, below, None if always is None else Decimal(str(always)))


_DELEGATION = ReferenceFile("delegation.yaml", _parse_delegation, what="scheme of delegation", shipped="default-folder")


@dataclass(frozen=True)
class FinanceCodes:
    """The finance system's codes (``finance.yaml``, decision record 0109): the service type of home
    care, and the cost centre of a package by its zone (else ``default_cost_centre``)."""

    version: str
    service_type: str
    default_cost_centre: str
    zone_cost_centres: dict[str, str]

    def cost_centre(self, zone: str) -> str:
        return self.zone_cost_centres.get(zone, self.default_cost_centre)


_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")


def load_finance(folder: Path | None = None) -> FinanceCodes:
    """``finance.yaml`` as it says now; a reference folder without one uses the shipped file."""
    return _FINANCE.load(folder)


def _parse_finance(raw: dict) -> FinanceCodes:
    centres = raw["cost_centres"]
    codes = FinanceCodes(
        str(raw["version"]),
        str(raw["service_type"]),
        str(centres["default"]),
        {str(z): str(c) for z, c in (centres.get("zones") or {}).items()},
    )
    for code in (codes.service_type, codes.default_cost_centre, *codes.zone_cost_centres.values()):
        if not _CODE.match(code):
            raise ValueError(f"{code!r} is not a code (letters, digits, . _ / -; up to 40)")
    return codes


_FINANCE = ReferenceFile("finance.yaml", _parse_finance, what="finance codes", shipped="always")


@dataclass(frozen=True)
class ReopeningWindow:
    """A period in which the framework receives applications to join (UK dates, both included)."""

    id: str
    name: str
    opens_on: dt.date
    closes_on: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.opens_on <= day <= self.closes_on


@dataclass(frozen=True)
class ChecklistItem:
    """One item of the due-diligence checklist, and the evidence the team looks for."""

    id: str
    title: str
    evidence: str


@dataclass(frozen=True)
class JoiningTerms:
    """``joining.yaml``: the framework's re-opening windows (in date order) and the due-diligence
    checklist (in the team's order). Decision records 0113 and 0114."""

    version: str
    windows: tuple[ReopeningWindow, ...]
    checklist: tuple[ChecklistItem, ...]

    def item_ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.checklist)


def load_joining(folder: Path | None = None) -> JoiningTerms:
    """``joining.yaml`` as it says now; the installation's folder without one uses the shipped file."""
    return _JOINING.load(folder)


def parse_joining(raw: dict) -> JoiningTerms:
    """The joining terms from the file's content; ``ValueError`` for windows that overlap or end
    before they open, or a checklist that is empty or names an item twice."""
    windows = tuple(
        sorted(
            (
                ReopeningWindow(str(w["id"]), str(w.get("name") or w["id"]), w["opens_on"], w["closes_on"])
                for w in raw.get("reopening_windows") or []
            ),
            key=lambda w: w.opens_on,
        )
    )
    for window in windows:
        if window.closes_on < window.opens_on:
            raise ValueError(f"window {window.id} closes before it opens")
    for earlier, later in itertools.pairwise(windows):
        if later.opens_on <= earlier.closes_on:
            raise ValueError(f"windows {earlier.id} and {later.id} overlap")
    checklist = tuple(
        ChecklistItem(str(i["id"]), str(i["title"]), str(i.get("evidence") or "")) for i in raw["due_diligence"]
    )
    ids = [i.id for i in checklist]
    if not ids or len(set(ids)) != len(ids):
        raise ValueError("the due-diligence checklist must name at least one item, each once")
    return JoiningTerms(str(raw["version"]), windows, checklist)


_JOINING = ReferenceFile("joining.yaml", parse_joining, what="joining terms", shipped="default-folder")


@lru_cache(maxsize=4)
def load_provider_seed(folder: Path | None = None) -> list[dict]:
    return yaml.safe_load((folder or reference_dir()).joinpath("providers.yaml").read_text())["providers"]


@dataclass(frozen=True)
class Hospital:
    code: str
    name: str
    wards: tuple[str, ...]


@dataclass(frozen=True)
class InHouse:
    """One of the council's in-house services a discharge can be referred to, and its capacity in
    carer hours a week."""

    service: str
    name: str
    hours_per_week: Decimal


@dataclass(frozen=True)
class DischargePathway:
    """A national discharge pathway (0-3) as the Discharge Hub sees it: what it ``means`` and the
    ``route`` the Hub takes for it (decision record 0120). Only pathway 1 is care at home, brokered here."""

    pathway: int
    means: str
    route: str


# The pathways when discharge.yaml names none (an installation's older file): decision record 0120.
DEFAULT_PATHWAYS = (
    DischargePathway(0, "home with no new support", "there is no package to broker: the ward discharges the person"),
    DischargePathway(1, "home with support", "home care, brokered here (reablement first where the Hub saw potential)"),
    DischargePathway(
        2,
        "a bedded rehabilitation setting",
        "the Discharge Hub books a community rehabilitation bed; request home care (pathway 1) when the person "
        "leaves it",
    ),
    DischargePathway(
        3, "a care home", "a residential or nursing placement, arranged by the council's care home placements team"
    ),
)


@dataclass(frozen=True)
class DischargeReference:
    """``discharge.yaml``: the hospitals and their wards (codes), the in-house services in the
    order the fallback tries them (decision record 0097), and the discharge pathways with the route
    each takes (decision record 0120)."""

    version: str
    hospitals: dict[str, Hospital]
    in_house: tuple[InHouse, ...]
    pathways: dict[int, DischargePathway] = field(default_factory=lambda: {p.pathway: p for p in DEFAULT_PATHWAYS})

    def service(self, name: str) -> InHouse | None:
        return next((s for s in self.in_house if s.service == name), None)


def load_discharge(folder: Path | None = None) -> DischargeReference:
    """``discharge.yaml`` as it says now; a reference folder without one uses the shipped file."""
    return _DISCHARGE.load(folder)


def _parse_discharge(raw: dict) -> DischargeReference:
    hospitals = {
        str(h["code"]): Hospital(str(h["code"]), str(h["name"]), tuple(str(w) for w in h["wards"]))
        for h in raw["hospitals"]
    }
    services = tuple(
        InHouse(str(s["service"]), str(s["name"]), Decimal(str(s["hours_per_week"]))) for s in raw["in_house_services"]
    )
    for s in services:
        if s.service not in ("reablement", "crisis_response") or s.hours_per_week < 0:
            raise ValueError(f"in-house service {s.service}: unknown, or a negative capacity")
    pathways = {p.pathway: p for p in DEFAULT_PATHWAYS}
    for entry in raw.get("pathways") or []:
        number = int(entry["pathway"])
        if number not in pathways:
            raise ValueError(f"discharge pathway {number}: the national pathways are 0-3")
        pathways[number] = DischargePathway(number, str(entry["means"]), str(entry["route"]))
    return DischargeReference(str(raw["version"]), hospitals, services, pathways)


_DISCHARGE = ReferenceFile("discharge.yaml", _parse_discharge, what="discharge reference data", shipped="always")


def load_provider_staff_seed(folder: Path | None = None) -> list[dict]:
    """Named staff users of providers for the demo and the tests (provider-staff.yaml: provider id,
    username at the identity provider, name, role); none when the folder has no such file."""
    path = (folder or reference_dir()).joinpath("provider-staff.yaml")
    if not path.exists():
        return []
    return list(yaml.safe_load(path.read_text()).get("users") or [])


def load_quality_register_seed(folder: Path | None = None) -> list[dict]:
    """The quality register's starting entries (quality-register.yaml: provider id, CQC location id,
    the rating's publication date); none when the folder has no such file."""
    path = (folder or reference_dir()).joinpath("quality-register.yaml")
    if not path.exists():
        return []
    return list(yaml.safe_load(path.read_text()).get("register") or [])
