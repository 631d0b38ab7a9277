"""Metrics (Prometheus) for the data plane and the engines."""
