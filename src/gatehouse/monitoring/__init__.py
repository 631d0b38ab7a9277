"""Thresholds on live traffic, escalation, incidents (ADR 0010)."""
