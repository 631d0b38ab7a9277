"""Benchmarking tools: a mock OpenAI-compatible upstream (the load runner comes later)."""
