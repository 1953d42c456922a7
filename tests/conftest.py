"""Plugins for every test: the ``telemetry_capture`` fixture (``telemetry.pytest_plugin``)."""

pytest_plugins = ["telemetry.pytest_plugin"]
