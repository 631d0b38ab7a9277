"""The OpenAI-compatible data plane: authentication, authorization, routing, records."""
