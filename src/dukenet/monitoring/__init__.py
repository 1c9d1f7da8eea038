"""Metrics (Prometheus), system statistics."""
