"""Prometheus metrics shared by the services (exposed on each service's /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter(
    "homecare_events_handled_total",
    "Events consumed, by outcome (applied, duplicate, ignored, dead_lettered)",
    ["service", "consumer", "event_type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "homecare_handler_seconds",
    "Time to apply one event, including its transaction",
    ["service", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HANDLER_RETRIES = Counter("homecare_handler_retries_total", "Retries after a failed attempt", ["service", "event_type"])
DEAD_LETTERS = Counter(
    "homecare_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "consumer", "reason"]
)
OUTBOX_PUBLISHED = Counter("homecare_outbox_published_total", "Outbox rows published to Kafka", ["service"])
OUTBOX_BACKLOG = Gauge("homecare_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_RELAY_SHARE = Gauge(
    "homecare_outbox_relay_share",
    "Outbox buckets this instance's relay claims: 16 / the live relays of the service (decision 0081)",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "homecare_consumer_lag",
    "Events on the partition not yet processed by the service's consumer group",
    ["service", "topic", "partition"],
)
CONSUMER_OLDEST_UNPROCESSED = Gauge(
    "homecare_consumer_oldest_unprocessed_seconds",
    "Age of the oldest event the service's group has not processed",
    ["service"],
)
REBALANCE_PAUSES = Histogram(
    "homecare_consumer_rebalance_pause_seconds",
    "Time a consumer of the instance held no partitions in a rebalance of its group: from its "
    "partitions being revoked to its next assignment (decision 0135)",
    ["service", "group"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
)
READY = Gauge("homecare_ready", "1 when the service reaches Kafka and PostgreSQL", ["service"])
PACKAGES_WAITING = Gauge(
    "homecare_packages_waiting", "Packages offered or unplaced, by urgency and status", ["urgency", "status"]
)
OLDEST_WAIT = Gauge(
    "homecare_packages_oldest_wait_seconds", "How long the longest-waiting package has waited", ["urgency", "status"]
)
WEBHOOK_DELIVERIES = Gauge(
    "homecare_webhook_deliveries", "Offers to providers' webhooks, by status (pending, failed)", ["status"]
)
NOTIFICATIONS = Counter(
    "homecare_notifications_total",
    "Notification deliveries by channel and outcome (sent, retried, failed)",
    ["channel", "outcome"],
)
NOTIFICATIONS_PENDING = Gauge(
    "homecare_notifications_pending", "Deliveries not yet sent, by status (pending, awaiting_contact)", ["status"]
)
DEAD_LETTERS_TRUNCATED = Counter(
    "homecare_dead_letters_truncated_total",
    "Dead letters cut to fit Kafka's record size: an excerpt kept, with the original's size and SHA-256",
    ["service", "consumer"],
)
DEAD_LETTERS_UNWRITTEN = Counter(
    "homecare_dead_letters_unwritten_total",
    "Messages Kafka refused for good even as (cut) dead letters: logged with their origin, partition moved on",
    ["service", "consumer", "error"],
)
OUTBOX_PARKED_TOTAL = Counter(
    "homecare_outbox_parked_total", "Outbox rows Kafka refused for good, set aside (parked)", ["service", "error"]
)
OUTBOX_PARKED = Gauge("homecare_outbox_parked_rows", "Outbox rows parked and not yet retried or discarded", ["service"])
OUTBOX_HELD = Gauge(
    "homecare_outbox_held_rows",
    "Outbox rows held back behind a parked row of the same aggregate (kept in order)",
    ["service"],
)
