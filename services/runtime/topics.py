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


def resolve(base: str) -> str:
    ns = namespace()
    return f"{ns}.{base}" if ns else base


def topic_of(event: Envelope) -> str:
    return resolve(contract.topic_for(event))


def group(service: str) -> str:
    return resolve(service)


def dead_letters() -> str:
    return resolve(contract.DEAD_LETTERS)


def all_topics() -> list[str]:
    return [resolve(t) for t in contract.ALL]
