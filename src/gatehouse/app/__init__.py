"""The ASGI application: ``create_app`` builds it from the runtime, the API and the background jobs."""

from gatehouse.app.factory import create_app

__all__ = ["create_app"]
