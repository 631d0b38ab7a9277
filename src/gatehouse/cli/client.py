"""The command line as a client of the control-plane API.

Every command that changes state or reads governed data sends an HTTP request to the admin
API, authenticated with the person's own admin key: the acting person is whoever that key
belongs to, never a name in the environment or on the command line (``GATEHOUSE_ACTOR`` is
not read). Where the API is, and with which key:

- ``GATEHOUSE_URL`` and ``GATEHOUSE_ADMIN_KEY`` (for scripts), else
- the profile ``$GATEHOUSE_HOME/profile.json`` written by ``gatehouse login`` (or by
  ``gatehouse init --admin`` on a single developer's machine), mode 0600.

A URL of ``local`` means this machine's store, served in this process by the same admin API
(``gatehouse.app.control``): the same authentication, the same checks, no server to start.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError

LOCAL = "local"
PROFILE = "profile.json"  # not credentials/: that folder holds deployment secrets a policy may name


class ApiFailure(GatehouseError):
    """The admin API refused a request; the message is the API's own."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Profile:
    url: str
    admin_key: str

    def as_json(self) -> bytes:
        return orjson.dumps({"url": self.url, "admin_key": self.admin_key}, option=orjson.OPT_INDENT_2)


def profile_path(settings: Settings) -> Path:
    return settings.home / PROFILE


def read_profile(settings: Settings) -> Profile | None:
    path = profile_path(settings)
    if not path.exists():
        return None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GatehouseError(f"{path} holds an admin key and is readable by others: chmod 600 {path}")
    try:
        data = orjson.loads(path.read_bytes())
        return Profile(str(data["url"]), str(data["admin_key"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise GatehouseError(f"{path} is not a Gatehouse profile: sign in again with `gatehouse login`") from None


def write_profile(settings: Settings, profile: Profile) -> Path:
    """Written whole, mode 0600 from the start, under a name nobody could have prepared
    (``mkstemp``: O_EXCL, never through a link), then renamed into place."""
    path = profile_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(prefix=f".{PROFILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(profile.as_json())
        os.replace(draft, path)
    except BaseException:
        Path(draft).unlink(missing_ok=True)
        raise
    return path


def resolve(settings: Settings) -> Profile:
    saved = read_profile(settings)
    url = os.environ.get("GATEHOUSE_URL") or (saved.url if saved else LOCAL)
    key = os.environ.get("GATEHOUSE_ADMIN_KEY") or (saved.admin_key if saved else "")
    if not key:
        raise GatehouseError("not signed in: run `gatehouse login` (or set GATEHOUSE_ADMIN_KEY); "
                             "a new installation starts with `gatehouse init --admin you@example.com`")
    return Profile(url.rstrip("/"), key.strip())


class HttpClient(Protocol):
    """What the CLI needs of an HTTP client: httpx's, or Starlette's in-process one."""

    @property
    def base_url(self) -> Any: ...

    def request(self, method: str, url: str, *, json: Any = None, params: Any = None) -> Any: ...


def http_client(settings: Settings, url: str, key: str | None) -> HttpClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if url == LOCAL:
        from starlette.testclient import TestClient  # lazy: the in-process transport for a local store

        from gatehouse.app.control import create_control_app  # lazy: only for a local store

        return TestClient(create_control_app(settings), base_url="http://local.gatehouse", headers=headers,
                          raise_server_exceptions=False)
    if not url.startswith(("http://", "https://")):
        raise GatehouseError(f"the control-plane URL must be http(s):// or 'local', not {url!r}")
    return httpx.Client(base_url=url, headers=headers, timeout=60.0)


class ControlPlane:
    """One admin API, as the person the key belongs to."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.client.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise GatehouseError(f"cannot reach the control plane at {self.client.base_url}: "
                                 f"{type(exc).__name__}") from None
        if response.status_code >= 400:
            raise _failure(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None} or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, {k: v for k, v in (body or {}).items() if v is not None})

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def _failure(response: Any) -> ApiFailure:
    try:
        error = response.json()["error"]
        return ApiFailure(response.status_code, error.get("code"), str(error.get("message")))
    except (ValueError, KeyError, TypeError):
        return ApiFailure(response.status_code, None, f"the control plane answered HTTP {response.status_code}")


def control_plane() -> ControlPlane:
    """The signed-in person's connection, made for each command (the environment may differ)."""
    settings = Settings.from_env()
    profile = resolve(settings)
    return ControlPlane(http_client(settings, profile.url, profile.admin_key))


def quoted(value: str) -> str:
    """A path segment from a name or e-mail a person typed."""
    return quote(value, safe="@")
