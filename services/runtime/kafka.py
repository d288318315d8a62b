"""Kafka plumbing shared by the services, the CLI and the tests: the broker, topics, reading."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from schemas import topics
from services.runtime import kafka_records
from services.runtime import topics as runtime_topics
from services.runtime.logging import get_logger
from services.runtime.settings import SERVICES, ServiceSettings, SharedSettings, admin_settings

kafka_records.install()  # every reader of this process gets past records whose header names are not UTF-8

_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}

log = get_logger(__name__)


def broker_security(settings: SharedSettings) -> BaseSecurity | None:
    """FastStream's security object for the settings' identity (None on a PLAINTEXT cluster).
    A service signs in as its own principal, named after it unless configured otherwise."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    username = settings.kafka_username or (settings.service if isinstance(settings, ServiceSettings) else None)
    if not username:
        # Without it the client would only fail at its first connection, with a SASL error.
        raise ValueError(f"KAFKA_USERNAME must be set on a {settings.kafka_security_protocol} cluster")
    return _SASL[settings.kafka_sasl_mechanism](
        username, settings.kafka_password or "", use_ssl=settings.kafka_security_protocol == "SASL_SSL"
    )


def kafka_security(settings: SharedSettings | None = None) -> dict:
    """The same identity as keyword arguments of aiokafka's clients (admin, consumer, producer).
    Without settings: the operator's (the CLI's tools), from the environment or, on the local
    broker, the administrator's from deploy/kafka.sh's credentials."""
    return parse_security(broker_security(settings or admin_settings()))


def secured(security: dict) -> bool:
    """True when these client arguments sign in (the cluster checks ACLs)."""
    return security.get("security_protocol", "PLAINTEXT") != "PLAINTEXT"


# The batch_timeout_ms given to FastStream's batch subscribers: its own poll's, used only were
# poll_without_sleeping's not (the behaviour before decision 0163, and what its test detects).
FASTSTREAM_BATCH_TIMEOUT_MS = 20


def poll_without_sleeping(subscriber: Any, wait_ms: int) -> None:
    """Make a FastStream batch subscriber wait for records inside its poll, and nowhere else.

    FastStream's batch subscriber (0.7.8, ``BatchSubscriber.get_msg``) polls aiokafka's ``getmany``
    for ``batch_timeout_ms`` and, when that comes back empty, sleeps as long again before the next
    poll: an idle consumer woke 50 times a second, and an event that came during the sleep waited
    for its end, up to 20 ms a hop. ``getmany`` already returns as soon as a fetch brings records,
    so the poll waits up to ``wait_ms`` (milliseconds) and returns at the first record; it sleeps
    (50 ms) only after a poll that came back empty at once, so that it cannot spin. Decision 0163.
    """
    max_records = subscriber.max_records

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        records = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        if records:
            return tuple(chain.from_iterable(records.values()))
        if loop.time() - began < wait_ms / 2000:
            await asyncio.sleep(0.05)
        return ()

    subscriber.get_msg = get_msg


def provision_namespace(bootstrap: str, namespace: str) -> None:
    """Topics and ACLs of ``namespace`` on a secured cluster, as the operator (nothing on an
    open one: the services create their topics there). Callable from sync code, even inside a
    running event loop (it runs in a thread of its own): the test fixtures' and the benchmark's."""
    import concurrent.futures

    security = kafka_security(admin_settings(bootstrap))
    if not secured(security):
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, grant_service_acls(bootstrap, security, namespace=namespace)).result()


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service,
        security=broker_security(settings),
        # On a secured cluster topics are the administrator's to create (and a service may not).
        allow_auto_create_topics=settings.kafka_security_protocol == "PLAINTEXT",
        # The relay's guarantee rests on these: no duplicates from producer retries, and a
        # send only counts once every in-sync replica has it. The console publishes nothing, and
        # its read-only principal may not ask for a producer id.
        enable_idempotence=settings.service in SERVICES,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        graceful_timeout=settings.graceful_timeout_seconds,
        log_level=logging.DEBUG,  # our own structured lines describe each event
    )


DAY_MS = 86_400_000


def topic_configs(settings: SharedSettings | None = None, namespace: str | None = None) -> dict[str, dict[str, str]]:
    """Each topic of ``namespace`` with the configuration it is created (and kept) with: its
    retention (``retention.ms``, from the settings' ``kafka_retention_*_days``; -1 keeps
    forever), and the registry compacted - each provider's latest profile kept for as long as the
    provider exists, so a new brokerage instance can always rebuild its view from it."""
    s = settings or SharedSettings()
    days = {
        topics.PACKAGES: s.kafka_retention_packages_days,
        topics.SERVICE_AGREEMENTS: s.kafka_retention_service_agreements_days,
        topics.ANSWERS: s.kafka_retention_answers_days,
        topics.CONFIRMATIONS: s.kafka_retention_confirmations_days,
        topics.DEAD_LETTERS: s.kafka_retention_dead_letters_days,
    }
    configs = {}
    for base in topics.ALL:
        name = runtime_topics.resolve(base, namespace)
        if base == topics.REGISTRY:
            configs[name] = {"cleanup.policy": "compact", "retention.ms": "-1"}
        else:
            configs[name] = {"cleanup.policy": "delete", "retention.ms": str(max(-1, int(days[base] * DAY_MS)) or -1)}
    return configs


async def ensure_topics(
    bootstrap: str,
    replication_factor: int = 1,
    security: dict | None = None,
    namespace: str | None = None,
    configs: dict[str, dict[str, str]] | None = None,
    partitions: int | None = None,
) -> None:
    """Create the system's topics with ``partitions`` partitions (default the KAFKA_PARTITIONS
    setting) and their configuration (``configs``, default :func:`topic_configs` of the
    environment's settings), if missing; a topic that exists is given that configuration
    (retention is a decision, not the broker's default). A topic with other than ``partitions``
    partitions is left as it is and said in the log: adding partitions moves keys between them
    (decision 0115), so it is an operator's step, never a start-up side effect.

    On a secured cluster only the administrator may create topics (``homecare kafka acls``).
    """
    configs = configs or topic_configs(namespace=namespace)
    partitions = partitions or SharedSettings().kafka_partitions
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_security(security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=configs.get(t, {}),
            )
            for t in runtime_topics.all_topics(namespace)
            if t not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        # AlterConfigs replaces a topic's whole dynamic configuration: these are all of ours.
        present = [t for t in runtime_topics.all_topics(namespace) if t in existing]
        if present:
            for described in await admin.describe_topics(present):
                count = len(described.get("partitions") or [])
                if count and count != partitions:
                    log.warning(
                        "topic has another partition count than KAFKA_PARTITIONS; left as it is",
                        topic=described.get("topic"),
                        partitions=count,
                        setting=partitions,
                    )
        if present:
            for response in await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs.get(t, {})) for t in present]
            ):
                for error_code, message, _type, name in response.resources:
                    if error_code:
                        raise RuntimeError(f"could not configure topic {name}: {message or error_code}")
    finally:
        await admin.close()


async def topic_config(bootstrap: str, topic: str, key: str, security: dict | None = None) -> str | None:
    """One configuration value of a topic as the cluster has it (``retention.ms``,
    ``cleanup.policy``); None when it cannot say."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_security(security))
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})])
        for _error, _message, _type, _name, entries in response.resources:
            for entry in entries:
                if entry[0] == key:
                    return str(entry[1])
    finally:
        await admin.close()
    return None


def _security(security: dict | None) -> dict:
    return kafka_security() if security is None else security


async def partitions_of(bootstrap: str, topic: str, security: dict | None = None) -> list[int]:
    """The topic's partitions, straight from the cluster ([] when the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_security(security))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"])
    finally:
        await admin.close()


async def read_topic(
    bootstrap: str, topic: str, *, follow_seconds: float = 0.0, security: dict | None = None
) -> list[ConsumerRecord]:
    """Every record on the topic from the beginning to its current end (without a consumer
    group, so nothing is committed); with ``follow_seconds``, also what arrives meanwhile."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic, security)]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **_security(security)
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        follow_until = loop.time() + follow_seconds
        while True:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            caught_up = all([await consumer.position(tp) >= ends[tp] for tp in partitions])
            if caught_up and loop.time() >= follow_until:
                return records
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    oldest_unprocessed_age_s: float | None
    members: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


async def consumer_lag(
    bootstrap: str, subscriptions: dict[str, list[str]], security: dict | None = None
) -> list[PartitionLag]:
    """Committed vs end offsets per group and partition of the topics it reads (what
    kafka_exporter and Burrow report; FastStream exports no lag of its own), with the age of the
    oldest unprocessed event. A partition the group never committed on counts from its start,
    so a consumer stuck on its very first message still shows. Clients of its own, closed after:
    a :class:`LagProbe` keeps them for measuring again and again."""
    probe = LagProbe(bootstrap, security)
    try:
        return await probe.measure(subscriptions)
    finally:
        await probe.close()


class LagProbe:
    """An admin client and a consumer (no group) kept open to measure consumer lag again and again.

    Each service measures its own group's lag every 15 s; with new clients each time, every
    measurement signed in anew (SCRAM: a salted-password derivation in the service, a handshake in
    the broker), a client per topic among them - 6-8% of an idle service's py-spy samples
    (decision 0163).
    The clients are made again after a measurement that failed."""

    def __init__(self, bootstrap: str, security: dict | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def measure(self, subscriptions: dict[str, list[str]]) -> list[PartitionLag]:
        """One row per group and partition of the topics the group reads (see :func:`consumer_lag`)."""
        try:
            if self._admin is None or self._consumer is None:
                self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **_security(self.security))
                self._consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, enable_auto_commit=False, **_security(self.security)
                )
                await self._admin.start()
                await self._consumer.start()
            return await _lag(self._admin, self._consumer, subscriptions)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


async def _lag(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, subscriptions: dict[str, list[str]]
) -> list[PartitionLag]:
    members_of = await group_members(admin, list(subscriptions))
    names = sorted({n for topics_read in subscriptions.values() for n in topics_read})
    described = await admin.describe_topics(names) if names else []
    partitions_by_topic = {
        d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described if d["error_code"] == 0
    }
    rows = []
    try:
        for group, topics_read in subscriptions.items():
            offsets = await admin.list_consumer_group_offsets(group)
            partitions = [TopicPartition(n, p) for n in topics_read for p in partitions_by_topic.get(n, [])]
            if not partitions:
                continue
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                meta = offsets.get(tp)
                committed = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                age = await _age_at(consumer, tp, committed) if ends[tp] > committed else None
                rows.append(
                    PartitionLag(group, tp.topic, tp.partition, committed, ends[tp], age, members_of.get(group, 0))
                )
    finally:
        # The age look assigned a partition: left assigned, the consumer would go on fetching it.
        consumer.unsubscribe()
    return rows


async def group_members(admin: AIOKafkaAdminClient, groups: list[str]) -> dict[str, int]:
    """Active members per group. aiokafka hands back the raw DescribeGroups responses, whose
    group entries are (error_code, group_id, state, protocol_type, protocol, members, ...).
    One group per request: with several groups in one request, aiokafka 0.14 fails to decode
    Kafka 4.1's answer ("Buffer underrun") and the broker drops the connection."""
    counts = {}
    for group in groups:
        for response in await admin.describe_consumer_groups([group]):
            for entry in response.groups:
                counts[entry[1]] = len(entry[5])
    return counts


async def _age_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> float | None:
    """Seconds since the record at ``offset`` (the oldest unprocessed one) was written."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
    for record in batch.get(tp, []):
        return max(0.0, dt.datetime.now(dt.UTC).timestamp() - record.timestamp / 1000)
    return None


# ---- access control on a secured cluster ----------------------------------------------------
# One principal per service (docs/guide/kafka-security.md): each may write the topics it owns
# (schemas/topics.py OWNER) and the dead letters, read the topics it consumes, and use its own
# consumer group (reporting owns no topic: it writes only dead letters); the console only reads;
# `ops` replays dead letters (reads them, writes their original topics). The administrator is the only super user.
# aiokafka has the ACL protocol messages but no admin methods for them, so they are sent as is.

# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
_ANY = 1
_TOPIC, _GROUP = 2, 3
_LITERAL = 3
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3
RESOURCE_NAMES = {_TOPIC: "topic", _GROUP: "group"}
OPERATION_NAMES = {_READ: "read", _WRITE: "write", _DESCRIBE: "describe"}

# Principals besides the three event-driven services.
READERS = ("console",)  # read-only: the console's live tail, lag and KPIs
OPS = "ops"  # dead-letter replay (the CLI's and the console's): reads dead letters, writes their origin
PRINCIPALS = (*SERVICES, *READERS, OPS)

Grant = tuple[int, str, int]  # (resource type, resource name, operation)


def acl_plan(namespace: str | None = None) -> dict[str, list[Grant]]:
    """Per principal: the (resource type, resource name, operation) it is allowed, names
    resolved in ``namespace`` (default: this installation's)."""

    def topic(base: str, *ops: int) -> list[Grant]:
        return [(_TOPIC, runtime_topics.resolve(base, namespace), op) for op in ops]

    def group(name: str, *ops: int) -> list[Grant]:
        return [(_GROUP, runtime_topics.group(name, namespace), op) for op in ops]

    plan: dict[str, list[Grant]] = {}
    for service in SERVICES:
        owned = [t for t, owner in topics.OWNER.items() if owner == service] + [topics.DEAD_LETTERS]
        grants = [g for t in owned for g in topic(t, _WRITE, _DESCRIBE)]
        grants += [g for t in topics.CONSUMED_BY[service] for g in topic(t, _READ, _DESCRIBE)]
        grants += group(service, _READ, _DESCRIBE)
        plan[service] = grants
    # The console reads every topic (live tail, dead letters) and sees each group's lag;
    # it joins no group (it assigns partitions and commits nothing).
    plan["console"] = [g for t in topics.ALL for g in topic(t, _READ, _DESCRIBE)]
    plan["console"] += [g for s in SERVICES for g in group(s, _DESCRIBE)]
    plan[OPS] = topic(topics.DEAD_LETTERS, _READ, _DESCRIBE)
    plan[OPS] += [g for t in topics.EVENT_TOPICS for g in topic(t, _WRITE, _DESCRIBE)]
    return plan


def _admin(bootstrap: str, security: dict | None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_security(security))


async def grant_service_acls(
    bootstrap: str,
    security: dict | None = None,
    principals: dict[str, str] | None = None,
    namespace: str | None = None,
    replication_factor: int = 1,
) -> int:
    """As the administrator (``security``; default the operator's identity): create the topics of
    ``namespace`` and every principal's ACLs on them; safe to run again. ``principals``: principal
    -> Kafka user name (default: the same name). Returns the number of ACLs granted."""
    await ensure_topics(bootstrap, replication_factor, security=security, namespace=namespace)
    admin = _admin(bootstrap, security)
    await admin.start()
    wanted: set[tuple[str, int, str, int]] = set()
    try:
        for name, grants in acl_plan(namespace).items():
            principal = f"User:{(principals or {}).get(name, name)}"
            for resource_type, resource, operation in grants:
                response = await admin._send_request(
                    CreateAclsRequest(resource_type, resource, _LITERAL, principal, "*", operation, _ALLOW)
                )
                for error_code, message in response.creation_responses:
                    if error_code:
                        raise RuntimeError(f"could not grant {principal} on {resource}: {message or error_code}")
                wanted.add((principal, resource_type, resource, operation))
        # The controller has committed them; the broker applies them from the metadata log a
        # moment later. Return once the broker enforces them, so a client starting now is let in.
        for _ in range(100):
            if wanted <= {(a.principal, a.resource_type, a.resource, a.operation) for a in await _describe(admin)}:
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return len(wanted)


@dataclass(frozen=True)
class Acl:
    principal: str
    resource_type: int
    resource: str
    operation: int
    permission: int

    def __str__(self) -> str:
        allow = "allow" if self.permission == _ALLOW else "deny"
        kind = RESOURCE_NAMES.get(self.resource_type, str(self.resource_type))
        return (
            f"{self.principal} {allow} {OPERATION_NAMES.get(self.operation, self.operation)} on {kind} {self.resource}"
        )


async def _describe(admin: AIOKafkaAdminClient) -> list[Acl]:
    response = await admin._send_request(DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY))
    if response.error_code:
        raise RuntimeError(f"could not list ACLs: {response.error_message or response.error_code}")
    return [
        Acl(principal, resource_type, name, operation, permission)
        for resource_type, name, _pattern, acls in response.resources
        for principal, _host, operation, permission in acls
    ]


async def describe_acls(bootstrap: str, security: dict | None = None, namespace: str | None = None) -> list[Acl]:
    """The ACLs on ``namespace``'s topics and groups (every one with ``namespace=""`` and no
    installation namespace set), sorted by principal and resource."""
    names = {*runtime_topics.all_topics(namespace), *(runtime_topics.group(p, namespace) for p in PRINCIPALS)}
    admin = _admin(bootstrap, security)
    await admin.start()
    try:
        acls = await _describe(admin)
    finally:
        await admin.close()
    return sorted(
        (a for a in acls if a.resource in names),
        key=lambda a: (a.principal, a.resource_type, a.resource, a.operation),
    )


async def remove_namespace(
    bootstrap: str, namespace: str, security: dict | None = None, *, more_topics: Iterable[str] = ()
) -> None:
    """Delete ``namespace``'s topics (and ``more_topics``, a run's own) and, on a secured cluster,
    its ACLs: what a benchmark's or a test run's namespace leaves when it ends. A namespace's
    topics kept after its run are thousands of partitions after a few dozen runs, which the
    broker keeps opening, flushing and checking."""
    if not namespace.strip("."):
        raise ValueError("no namespace: that would be the system's own topics")
    security = _security(security)
    if secured(security):
        await revoke_namespace_acls(bootstrap, namespace, security)
    admin = _admin(bootstrap, security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in [*runtime_topics.all_topics(namespace), *more_topics] if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def revoke_namespace_acls(bootstrap: str, namespace: str, security: dict | None = None) -> None:
    """Delete every ACL on ``namespace``'s topics and groups (a test run's, when it ends)."""
    names = [(_TOPIC, t) for t in runtime_topics.all_topics(namespace)]
    names += [(_GROUP, runtime_topics.group(p, namespace)) for p in PRINCIPALS]
    admin = _admin(bootstrap, security)
    await admin.start()
    try:
        for resource_type, name in names:
            await admin._send_request(DeleteAclsRequest(resource_type, name, _LITERAL, None, None, _ANY, _ANY))
    finally:
        await admin.close()
