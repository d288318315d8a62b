"""The shared runtime of the three services, written once.

settings   - configuration from the environment (pydantic-settings)
logging    - structlog set-up: JSON off a TTY, console on one
db         - asyncpg pools that wait for PostgreSQL, role/schema provisioning, migrations
outbox     - the unit of work (one transaction: effects + inbox + outbox) and the relay
consumer   - Kafka subscribers with inbox de-duplication, retries and dead letters
dead_letters - the dead-letter topic: publish, list, replay
http       - the FastAPI app every service serves: health, metrics, errors, limits
reference  - the framework's reference data (zones, bands, rate cards, providers)
service    - the bootstrap that wires all of the above for one service
"""
