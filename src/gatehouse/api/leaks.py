"""``POST /admin/leaks``: secret scanners report leaked keys; Gatehouse revokes them at once.

The body is what GitHub's secret scanning partner program sends: a JSON array of
``{"token", "type", "url", "source"}``. A report is authenticated either by GitHub's
signature (ECDSA P-256 over the raw body, headers ``Github-Public-Key-Identifier`` and
``Github-Public-Key-Signature``, checked against the public keys in
``GATEHOUSE_GITHUB_SCANNING_KEYS``, a file in the shape of GitHub's
``/meta/public_keys/secret_scanning``) or by ``Authorization: Bearer`` with
``GATEHOUSE_LEAK_REPORT_TOKEN``, for other scanners. Workload keys are refused: no workload
identity may call an admin endpoint.

Each match is answered, as GitHub expects, with a label: ``true_positive`` for a real key
(now revoked, its owner notified) and ``false_positive`` otherwise. Tokens are never echoed:
they are named by their SHA-256.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.admin import admin_person
from gatehouse.api.errors import ApiError
from gatehouse.api.validation import read_json_body_any
from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.core.webhook import notify
from gatehouse.identity.events import leak_event
from gatehouse.identity.lifecycle import LeakOutcome, key_id_from_report, report_leak
from gatehouse.store.db import Database

log = logging.getLogger("gatehouse.leaks")
MAX_REPORT_BYTES = 1024 * 1024
MAX_MATCHES = 1000


def load_github_keys(path: str | None) -> dict[str, ec.EllipticCurvePublicKey]:
    """Key identifier → public key, from a file shaped like GitHub's public-keys API answer."""
    if not path:
        return {}
    data = orjson.loads(Path(path).read_bytes())
    keys = {}
    for item in data.get("public_keys", []):
        key = serialization.load_pem_public_key(item["key"].encode())
        if isinstance(key, ec.EllipticCurvePublicKey):
            keys[item["key_identifier"]] = key
    return keys


class LeakReports:
    def __init__(self, db: Database, settings: Settings, pepper: bytes,
                 github_keys: dict[str, ec.EllipticCurvePublicKey]) -> None:
        self.db = db
        self.settings = settings
        self.pepper = pepper
        self.github_keys = github_keys

    def _reporter(self, request: Request, raw: bytes) -> str:
        """Who is reporting, or an ApiError."""
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if token.startswith("gth_"):  # an admin key (an identity-admin may report), never a workload key
            principal = admin_person(self.db, self.pepper, authorization)
            if principal.enrolment:
                raise ApiError(403, "an enrolment key must be exchanged for your own key first", "enrolment_key")
            if "identity-admin" not in principal.roles:
                raise ApiError(403, f"{principal.email} needs the identity-admin role to report leaks", "admin_forbidden")
            return f"person:{principal.email}"
        key_id = request.headers.get("github-public-key-identifier")
        signature = request.headers.get("github-public-key-signature")
        if key_id and signature:
            public_key = self.github_keys.get(key_id)
            if public_key is None:
                raise ApiError(401, "unknown GitHub public key identifier (see GATEHOUSE_GITHUB_SCANNING_KEYS)",
                               "invalid_signature")
            try:
                public_key.verify(base64.b64decode(signature), raw, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                raise ApiError(401, "the report's signature does not verify", "invalid_signature") from None
            return "github-secret-scanning"
        expected = self.settings.leak_report_token
        if expected and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode()):
            return "leak-report-token"
        if not expected and not self.github_keys:
            raise ApiError(403, "leak reporting is not configured: set GATEHOUSE_LEAK_REPORT_TOKEN or "
                                "GATEHOUSE_GITHUB_SCANNING_KEYS", "leak_reports_disabled")
        raise ApiError(401, "send the leak report token as 'Authorization: Bearer …' or a GitHub signature",
                       "invalid_report_credentials")

    async def post(self, request: Request) -> Response:
        try:
            raw, matches = await read_json_body_any(request, MAX_REPORT_BYTES)
            reporter = await asyncio.to_thread(self._reporter, request, raw)
            if not isinstance(matches, list) or not all(isinstance(m, dict) for m in matches):
                raise ApiError(400, "the report must be a JSON array of objects with a token", "invalid_report")
            if len(matches) > MAX_MATCHES:
                raise ApiError(413, f"at most {MAX_MATCHES} matches per report", "report_too_large")
            handled = [await asyncio.to_thread(self._handle, match, reporter) for match in matches]
        except ApiError as error:
            return error.response()
        # Every key is revoked before anyone is notified: a slow or broken webhook delays nothing.
        for _, outcome in handled:
            if outcome is not None:
                delivery = await asyncio.to_thread(notify, self.settings.notify_webhook, leak_event(outcome))
                log.warning("leaked key %s (%s) revoked on a report from %s; owner notification: %s",
                            outcome.key_id, outcome.identity or outcome.owner, reporter, delivery)
        return Response(orjson.dumps([answer for answer, _ in handled]), media_type="application/json")

    def _handle(self, match: dict[str, Any], reporter: str) -> tuple[dict[str, Any], LeakOutcome | None]:
        token = match.get("token")
        token_type = match.get("type") if isinstance(match.get("type"), str) else "gatehouse_api_key"
        answer = {"token_hash": hashlib.sha256(str(token).encode()).hexdigest(), "token_type": token_type,
                  "label": "false_positive"}
        if not isinstance(token, str) or not token.startswith("gth_"):
            return answer, None  # only whole keys, verified by their checksum, are accepted from scanners
        where = next((str(match[field])[:2000] for field in ("url", "source") if match.get(field)), None)
        try:
            key_id_from_report(token)
            outcome = report_leak(self.db, reporter, token, source=where, reported_by=reporter, pepper=self.pepper)
        except (GatehouseError, NotFound):
            return answer, None
        return {**answer, "label": "true_positive"}, outcome
