"""What the gateway tells operators about itself: Prometheus metrics for requests
(``gateway_metrics``) and engines (``engine_metrics``), their exposition across workers
(``exposition``), bounded label values (``labels``) and OpenTelemetry traces (``tracing``).
Never request text."""
