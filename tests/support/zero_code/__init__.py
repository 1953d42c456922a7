"""Small apps that never import ``telemetry``, run under ``opentelemetry-instrument`` by
tests/telemetry/test_autoinstrument.py: what a team that already starts its services that way has."""
