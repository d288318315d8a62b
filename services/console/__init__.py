"""The web console: pages for the brokerage team, operations and providers, on the services' HTTP APIs."""
