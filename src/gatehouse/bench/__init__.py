"""Benchmarks of the serving path: scenarios (``scenario``, ``arrivals``, ``workload``), the
load runner (``runner``, over its own HTTP/1.1 client ``http1``), reports (``report``,
``html_report``, ``stats``), what the gateway adds (``overhead``), the embedded engine's
batching (``engine_bench``), a mock OpenAI-compatible upstream (``mock_upstream``) and the
processes they start (``processes``)."""
