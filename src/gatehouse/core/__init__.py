"""Shared basics every layer may use: errors, time, data classes, durations, settings,
the key format, the strict schema base, YAML documents with line numbers, SSE framing,
webhook delivery, the shape of a request's decision record and text shown to people
(``display``). Nothing here imports
another Gatehouse package."""
