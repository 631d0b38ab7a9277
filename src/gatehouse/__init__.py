"""Gatehouse: a governed, OpenAI-compatible gateway for in-house LLM inference."""

__version__ = "0.1.0"
