"""Grafana provisioning files and the generator of its dashboards (:mod:`deploy.grafana.generate`)."""
