"""Guardrails: detectors that find spans in text (``pii``, ``secrets``, ``injection``,
``terms``, over ``normalise``d text, with optional local ``classifier``s), the policy section
that names them (``schema``), profiles and who gets which (``profiles``), and what a profile
does to a request (``inspect``) and to an answer, streamed or not (``output``: every field of
model text an answer has, ``answer_fields``; how long a stream is held, ``hold``; putting
redacted values back, ``restore``). Knows nothing of HTTP, the store or identities."""
