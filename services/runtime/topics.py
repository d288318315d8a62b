"""Topic and consumer-group names as deployed: the contract's names under an optional namespace.

``HOMECARE_NAMESPACE=staging`` turns ``brokerage.packages`` into ``staging.brokerage.packages``
and the ``brokerage`` consumer group into ``staging.brokerage``, so several installations (or
test runs) can share one Kafka cluster without reading each other's events.
"""

from __future__ import annotations

import os

from schemas import topics as contract
from schemas.events import Envelope


def namespace() -> str:
    return os.environ.get("HOMECARE_NAMESPACE", "").strip(".")


def resolve(base: str, ns: str | None = None) -> str:
    """``base`` in namespace ``ns`` (default: this installation's, from ``HOMECARE_NAMESPACE``)."""
    ns = namespace() if ns is None else ns.strip(".")
    return f"{ns}.{base}" if ns else base


def base_of(name: str) -> str:
    """The contract's name of a deployed topic (``staging.brokerage.packages`` -> ``brokerage.packages``)."""
    ns = namespace()
    return name[len(ns) + 1 :] if ns and name.startswith(ns + ".") else name


def topic_of(event: Envelope) -> str:
    return resolve(contract.topic_for(event))


def group(service: str, ns: str | None = None) -> str:
    return resolve(service, ns)


def dead_letters() -> str:
    return resolve(contract.DEAD_LETTERS)


def all_topics(ns: str | None = None) -> list[str]:
    return [resolve(t, ns) for t in contract.ALL]
