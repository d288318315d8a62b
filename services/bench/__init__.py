"""The benchmark (the pipeline under load) and what drives the system from outside: the services
started as processes, packages requested through the HTTP API and waited for."""
