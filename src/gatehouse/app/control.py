"""The control plane alone: every ``/admin`` route and ``/healthz``, with no engines, no
inference routes and no background jobs.

The command line serves it in its own process for a store on this machine (``GATEHOUSE_URL``
of ``local``), so a local command goes through the same authentication and checks as a remote
one; tests drive it with Starlette's ``TestClient``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gatehouse.api.admin import Authenticator
from gatehouse.api.routes import AdminApis, admin_routes, error_handlers
from gatehouse.audit import delivery
from gatehouse.core.config import Settings
from gatehouse.policy.versions import in_force
from gatehouse.store.db import Database


def create_control_app(settings: Settings | None = None, authenticator: Authenticator | None = None) -> Starlette:
    """The admin API over ``settings``' store (migrated to the newest schema first, as every
    command did before it went through the API)."""
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    db.upgrade()
    # audit entries appended here are checkpointed (the key made on first use) and witnessed as the gateway's are
    delivery.configure(settings)

    async def health(request: Request) -> Response:
        version = await asyncio.to_thread(in_force, db)
        return JSONResponse({"status": "ok", "control_plane": True, "policy_version": version})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            db.dispose()

    routes: list[BaseRoute] = [Route("/healthz", health),
                               *admin_routes(AdminApis.build(db, settings, settings.pepper(), authenticator))]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=error_handlers())
    app.state.settings = settings
    app.state.db = db
    return app
