"""The policy simulator: a year of synthetic demand replayed through the brokerage's allocation
rules per policy, its synthetic market and demand (which the demo, benchmark and tests use too),
the comparison and its charts."""
