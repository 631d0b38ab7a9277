"""Guardrails: detectors that find spans in text, and what a profile does about them."""
