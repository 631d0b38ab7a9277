"""Thresholds on live traffic, escalation and incidents (ADR 0010): the policy section
(``schema``), per-minute usage counts (``usage``), the evaluator and its ladder
(``evaluate``), incidents operators acknowledge and close (``incidents``) and the pager
(``pager``)."""
