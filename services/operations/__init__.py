"""The operations reading code: KPIs, the event streams decoded, consumer lag, dead letters.

Used by the ``homecare`` command and the web console alike; it imports neither."""
