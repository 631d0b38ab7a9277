"""The request pipeline: authenticate → authorize → route → engine → record.

Everything here reads immutable snapshots (the key table, the compiled policy); the
database is touched only by background tasks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from gatehouse.api.errors import ApiError, from_domain
from gatehouse.api.request_model import Shape, check_request, output_token_limit
from gatehouse.api.streaming import ClosingStreamingResponse, unless_disconnected
from gatehouse.api.validation import OFF_LOOP_BYTES, check_model, read_json_body
from gatehouse.core.classification import DATA_CLASSES, highest, rank
from gatehouse.core.decision import RequestRecord
from gatehouse.core.errors import Unauthenticated
from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.engines.base import EngineFailure, EngineReply, UpstreamRejected, token_count
from gatehouse.guardrails.answer_fields import masks_output, unscannable_parameter
from gatehouse.guardrails.inspect import Blocked, Verdict, caller_text, inspect_input
from gatehouse.guardrails.output import StreamGuard, guard_response
from gatehouse.guardrails.profiles import EffectiveProfile
from gatehouse.guardrails.restore import Restorer
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.routing.router import Attempt, NoDeploymentAnswered, dispatch
from gatehouse.runtime.enforced import Enforced
from gatehouse.runtime.freshness import Freshness
from gatehouse.runtime.keytable import KeyTable, Principal
from gatehouse.runtime.records import RecordWriter
from gatehouse.telemetry import evidence_metrics
from gatehouse.telemetry.tracing import NULL_TRACE, UPSTREAM_TRACEPARENT, RequestTrace, Tracing

log = logging.getLogger("gatehouse.gateway")
JSON = "application/json"
DEFAULT_DATA_CLASS = "internal"  # what a request is unless its header or its content raises it
CONFIDENTIAL = rank("confidential")
DEFAULT_INDEX = rank(DEFAULT_DATA_CLASS)
SKIPPED = "data_class"  # the reason given for a deployment not allowed to receive the request's data
T = TypeVar("T")


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _server_timing(started: float, dispatched: float, answered: float) -> str:
    """W3C Server-Timing: Gatehouse's own time before the response starts, and the time spent
    waiting on deployments (for a stream, until its first event)."""
    own = (dispatched - started) + (time.perf_counter() - answered)
    return f"gatehouse;dur={own * 1000:.3f}, upstream;dur={(answered - dispatched) * 1000:.3f}"


# Engine fields (allowed by an alias's requests.extra_fields) that return model text token by
# token where no output rule can follow it: vLLM's prompt_logprobs (the tokens the model would
# put at each position of the prompt), llama-server's n_probs.
TOKEN_LEVEL_FIELDS = ("prompt_logprobs", "n_probs")


def token_level_extra(body: dict[str, Any]) -> str | None:
    """The engine field of ``body`` that asks for answer text token by token, or None."""
    for name in TOKEN_LEVEL_FIELDS:
        value = body.get(name)
        if value is not None and value is not False and not (name == "n_probs" and value == 0):
            return name
    return None


def claimed_class(values: list[str], default: str) -> str:
    """The data class a request's ``x-gatehouse-data-class`` headers raise ``default`` to: the
    highest of every value, whether sent as several headers or one comma-separated list (a proxy
    that adds its own must not be outvoted by the client's earlier one). Any value that is not a
    class is a 400."""
    claimed = [part.strip().lower() for value in values for part in value.split(",")]
    if any(part not in DATA_CLASSES for part in claimed):
        raise ApiError(400, f"x-gatehouse-data-class must be one of {', '.join(DATA_CLASSES)}", "invalid_data_class")
    return highest(default, *claimed)  # the header raises the class, never lowers it


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request the gateway has authenticated, read, authorized and guarded: what dispatch needs."""

    principal: Principal
    body: dict[str, Any]
    alias: str
    route: tuple[str, ...]          # the deployments that may receive this request's data, in order
    skipped: list[str]              # "deployment=data_class" for those that may not
    profile: EffectiveProfile | None
    originals: dict[str, str]       # redacted values to restore in the answer
    stream: bool


class Gateway:
    def __init__(self, enforced: Enforced, keys: KeyTable, records: RecordWriter, max_body_bytes: int,
                 tracing: Tracing | None = None, freshness: Freshness | None = None) -> None:
        self.enforced = enforced  # replaced whole when another policy version becomes active
        self.keys = keys
        self.records = records
        self.freshness = freshness or Freshness(float("inf"))
        self.max_body_bytes = max_body_bytes
        self.tracing = tracing  # None: traces are off

    # -- helpers ------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> Principal:
        if self.freshness.stale:
            evidence_metrics.STALE_REFUSED.inc()
            raise ApiError(503, f"this gateway has not reached the control plane for {self.freshness.age():.0f} s "
                           f"(bound {self.freshness.bound:g} s): it cannot see revocations, so it serves nothing "
                           "until it can", "control_plane_unreachable", headers={"retry-after": "5"})
        try:
            return self.keys.authenticate(request.headers.get("authorization"))
        except Unauthenticated as refused:
            raise from_domain(refused) from None

    @staticmethod
    def _allowed(policy: CompiledPolicy, principal: Principal) -> frozenset[str]:
        allowed = policy.allowed_aliases(principal.identity)
        return allowed & principal.scopes if principal.scopes is not None else allowed

    def _authorize(self, policy: CompiledPolicy, principal: Principal, alias: str) -> None:
        if not policy.has_alias(alias):
            # the name is the caller's text, not the policy's: not repeated
            raise ApiError(404, "the model this request names does not exist (see GET /v1/models)", "model_not_found",
                           "model")
        if alias not in self._allowed(policy, principal):
            raise ApiError(403, f"identity {principal.identity.name!r} is not granted model {alias!r}"
                           + (" by this key's scopes" if principal.scopes is not None else ""),
                           "model_not_granted", "model")

    def _guard(self, policy: CompiledPolicy, principal: Principal, alias: str, endpoint: str, body: dict[str, Any],
               request: Request, record: RequestRecord
               ) -> tuple[tuple[str, ...], EffectiveProfile | None, dict[str, str], Shape]:
        """The request model, input guardrails and data class; returns the deployments of the
        route that may receive this request's data, the profile (for the answer), the redacted
        values to restore in it and the request's shape. Records every verdict, never the text
        it matched."""
        rules = policy.loaded.document.aliases[alias].requests
        shape = check_request(endpoint, body, frozenset(rules.extra_fields))
        if shape.remote_urls and not rules.remote_urls:
            where = shape.remote_urls[0]
            raise ApiError(400, f"{where}: model {alias!r} takes no remote URLs (the policy refuses them); send the "
                           "content as a data: URL", "remote_url_refused", where)
        cleared = rank(principal.clearance)
        default = DATA_CLASSES[min(DEFAULT_INDEX, cleared)]  # an identity cleared only for public sends public
        data_class = claimed_class(request.headers.getlist("x-gatehouse-data-class"), default)
        profile = policy.guardrail_profiles.for_request(principal.identity.name, principal.identity.team, alias)
        originals: dict[str, str] = {}
        if profile is not None:
            if shape.token_ids is not None:
                raise ApiError(400, f"{shape.token_ids} holds token ids, which guardrail profile {profile.name!r} "
                               "cannot inspect: send text", "guardrail_unscannable", shape.token_ids)
            try:
                inspection = inspect_input(profile, endpoint, body, shape.sites, shape.binary_bytes)
            except Blocked as blocked:
                record.guardrails = [verdict.as_dict() for verdict in blocked.verdicts]
                verdict = blocked.verdict
                raise ApiError(400, f"the request was blocked by guardrail {verdict.rule} (profile {profile.name!r}, "
                               f"in {verdict.field})", "guardrail_blocked") from None
            record.guardrails = [verdict.as_dict() for verdict in inspection.verdicts] or None
            originals = inspection.originals
            if inspection.sensitive:  # personal data or secrets go upstream as they are
                data_class = highest(data_class, "confidential")
        record.data_class = data_class
        if rank(data_class) > cleared:
            raise ApiError(403, f"identity {principal.identity.name!r} is cleared for data up to {principal.clearance}; "
                           f"this request is {data_class}", "data_class_not_cleared")
        granted = policy.granted_class(principal.identity, alias) or "public"
        if rank(data_class) > rank(granted):
            raise ApiError(403, f"identity {principal.identity.name!r} may send {alias!r} data up to {granted}; this "
                           f"request is {data_class}", "data_class_not_granted")
        route = tuple(name for name in policy.route(alias) if data_class in policy.deployments[name].data_classes)
        if not route:
            raise ApiError(403, f"no deployment of {alias!r} may receive {data_class} data", "data_class_not_allowed")
        limit, why, code = output_token_limit(rules.max_output_tokens, [policy.deployments[name] for name in route])
        for name in ("max_tokens", "max_completion_tokens"):
            asked = body.get(name)
            if isinstance(asked, int) and asked > limit:
                raise ApiError(400, f"{name}: at most {limit} for model {alias!r} ({why})", code, name)
        if (rules.max_output_tokens is not None and endpoint != "embeddings"
                and body.get("max_tokens") is None and body.get("max_completion_tokens") is None):
            body["max_tokens"] = limit  # the policy's bound holds for a caller who names none, not the engine's default
        return route, profile, originals, shape

    @staticmethod
    async def _limit_tokens(profile: EffectiveProfile, route: tuple[str, ...], enforced: Enforced, endpoint: str,
                            body: dict[str, Any], shape: Shape, record: RequestRecord) -> None:
        """``max_input_tokens``, counted by the first deployment of the route that has a tokenizer
        to ask (the one that will most likely answer)."""
        limit, text = profile.max_input_tokens, caller_text(endpoint, body, shape.sites)
        failed = None
        for name in route:
            try:
                count = await enforced.engines[name].count_tokens(text)
            except EngineFailure as failure:
                failed = failure
                continue
            if count is None:
                continue
            if not token_count(count):  # a tokenizer's nonsense is its failure, not the caller's size
                failed = EngineFailure("bad_token_count")
                continue
            if limit is not None and count > limit:
                verdict = Verdict("size.max_input_tokens", "block", False, "*", 0, count, 1.0)
                record.add_verdicts([verdict.as_dict() | {"deployment": name}])
                raise ApiError(400, f"the request was blocked by guardrail size.max_input_tokens (profile {profile.name!r}: "
                               f"{count} tokens by {name}'s tokenizer, limit {limit})", "guardrail_blocked")
            return
        if failed is not None:
            raise ApiError(503, f"no deployment of {record.alias!r} could count this request's tokens "
                           f"({failed.kind}) for guardrail profile {profile.name!r}", "tokenizer_unavailable")
        raise ApiError(400, f"guardrail profile {profile.name!r} limits requests to {limit} tokens, but no deployment of "
                       f"{record.alias!r} exposes a tokenizer (embedded, vllm, llama-server and tgi do)",
                       "guardrail_unmeasurable")

    # -- endpoints ----------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        policy = self.enforced.policy
        headers = {"x-gatehouse-request-id": _request_id(), "x-gatehouse-policy-version": policy.version}
        try:
            principal = self._authenticate(request)
        except ApiError as error:
            return error.response(headers)
        data = [{"id": alias, "object": "model", "created": 0, "owned_by": "gatehouse"}
                for alias in sorted(self._allowed(policy, principal))]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON, headers=headers)

    async def get_model(self, request: Request) -> Response:
        policy = self.enforced.policy
        headers = {"x-gatehouse-request-id": _request_id(), "x-gatehouse-policy-version": policy.version}
        try:
            principal = self._authenticate(request)
            alias = request.path_params["model"]
            self._authorize(policy, principal, alias)
        except ApiError as error:
            return error.response(headers)
        body = {"id": alias, "object": "model", "created": 0, "owned_by": "gatehouse"}
        return Response(orjson.dumps(body), media_type=JSON, headers=headers)

    async def chat_completions(self, request: Request) -> Response:
        return await self._infer(request, "chat/completions")

    async def completions(self, request: Request) -> Response:
        return await self._infer(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self._infer(request, "embeddings")

    async def _infer(self, request: Request, endpoint: str) -> Response:
        # One policy version from start to end, even when another becomes active meanwhile;
        # its engines stay open until every request that holds it has finished.
        enforced = self.enforced
        enforced.in_flight += 1
        try:
            response = await self._infer_with(enforced, request, endpoint)
        except BaseException:
            enforced.release()
            raise
        if not isinstance(response, ClosingStreamingResponse):  # a stream releases it when it ends
            enforced.release()
        return response

    async def _infer_with(self, enforced: Enforced, request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        record = RequestRecord(_request_id(), datetime.now(UTC), endpoint, enforced.policy.version)
        headers = {"x-gatehouse-request-id": record.request_id, "x-gatehouse-policy-version": record.policy_version,
                   "x-gatehouse-deployment": "none", "x-gatehouse-fallbacks": "none"}
        if not self.records.accepting:  # no record could be kept: nothing is answered (not even recorded)
            return self._unrecorded(headers)
        trace = self.tracing.begin(request.headers, endpoint, started) if self.tracing is not None else NULL_TRACE
        if isinstance(trace, RequestTrace):
            record.trace = trace  # made into spans when the record is added
            UPSTREAM_TRACEPARENT.set(trace.traceparent())  # this request's task only
        try:
            admitted = await self._admit(enforced, request, endpoint, record, trace)
            trace.mark("dispatched")
            dispatched = time.perf_counter()
            deployment, reply, attempts = await self._dispatch(enforced, request, admitted, record, headers, trace)
        except ApiError as error:
            record.status, record.error_code = error.status, error.code
            record.latency_ms = (time.perf_counter() - started) * 1000
            self.records.add(record)
            return error.response(headers)
        except Exception:  # a defect: the caller gets a 500 in the error shape, the record says so
            log.exception("request %s failed inside the gateway", record.request_id)
            record.status, record.error_code = 500, "internal_error"
            record.latency_ms = (time.perf_counter() - started) * 1000
            self.records.add(record)
            return ApiError(500, f"internal error; see the gateway log for request {record.request_id}",
                            "internal_error").response(headers)

        answered = time.perf_counter()
        trace.mark("answered")
        trace.tried(attempts)
        headers["server-timing"] = _server_timing(started, dispatched, answered)
        record.deployment = deployment
        self._note_route(record, headers, admitted.skipped, attempts, deployment)
        profile = admitted.profile
        output_guard = profile if profile is not None and profile.output and endpoint != "embeddings" else None
        restorer = Restorer(admitted.originals) if admitted.originals and endpoint != "embeddings" else None
        try:
            if reply.stream is None:
                return self._answer(reply, record, headers, started, output_guard, restorer)
            return self._stream(enforced, reply, record, headers, started, output_guard, restorer)
        except Exception:  # a defect after dispatch (e.g. an answer the output rules cannot read)
            log.exception("request %s failed inside the gateway", record.request_id)
            record.status, record.error_code = 500, "internal_error"
            record.latency_ms = (time.perf_counter() - started) * 1000
            self.records.add(record)
            return ApiError(500, f"internal error; see the gateway log for request {record.request_id}",
                            "internal_error").response(headers)

    async def _admit(self, enforced: Enforced, request: Request, endpoint: str, record: RequestRecord,
                     trace: Any) -> Admitted:
        """Everything before an engine is asked: who is calling, what they sent, whether the
        policy lets them, and what the guardrails and data class allow. Raises ApiError."""
        policy = enforced.policy
        principal = self._authenticate(request)
        trace.mark("authenticated")
        record.identity, record.key_id = principal.identity.name, principal.key_id
        record.team = principal.identity.team
        body, size = await read_json_body(request, self.max_body_bytes)
        alias = check_model(body)
        record.alias = alias
        trace.mark("validated")
        self._authorize(policy, principal, alias)
        trace.mark("authorized")
        guard = functools.partial(self._guard, policy, principal, alias, endpoint, body, request, record)
        # A large body takes milliseconds to seconds to check and scan: off the event loop, so
        # other requests are not held up; a small one is quicker inline than a thread hop. Its
        # size as received: a chunked body says none up front.
        route, profile, originals, shape = await asyncio.to_thread(guard) if size > OFF_LOOP_BYTES else guard()
        unscannable = unscannable_parameter(endpoint, body) or (
            token_level_extra(body) if endpoint != "embeddings" else None)
        if masks_output(profile) and unscannable is not None:
            assert profile is not None  # masks_output(None) is False
            raise ApiError(400, f"guardrail profile {profile.name!r} redacts or blocks answers, which {unscannable} would "
                           "show unscanned (token by token, or as audio): leave it out", "guardrail_unscannable", unscannable)
        # deployments of the route that may not receive this data class: named, like fallbacks
        skipped = [f"{name}={SKIPPED}" for name in policy.route(alias) if name not in route]
        if profile is not None and profile.max_input_tokens is not None:
            await unless_disconnected(request, self._limit_tokens(profile, route, enforced, endpoint, body, shape, record))
        stream = endpoint != "embeddings" and bool(body.get("stream"))
        record.stream = stream
        trace.mark("guarded")
        return Admitted(principal, body, alias, route, skipped, profile, originals, stream)

    async def _dispatch(self, enforced: Enforced, request: Request, admitted: Admitted, record: RequestRecord,
                        headers: dict[str, str], trace: Any) -> tuple[str, EngineReply, list[Attempt]]:
        """The route, primary first; a failure of every deployment becomes the caller's error."""
        try:
            return await unless_disconnected(request, dispatch(
                admitted.route, enforced.engines, record.endpoint, admitted.body, admitted.stream,
                admitted.principal.identity.name, record.request_id))
        except NoDeploymentAnswered as failed:
            trace.tried(failed.attempts)
            self._note_route(record, headers, admitted.skipped, failed.attempts, None)
            if failed.status == 400:
                raise ApiError(400, f"model {admitted.alias!r} does not serve /v1/{record.endpoint}",
                               "unsupported_endpoint", "model") from None
            extra = {"retry-after": str(failed.retry_after or 1)} if failed.status == 429 else None
            raise ApiError(failed.status, f"no deployment of {admitted.alias!r} could answer: {failed}",
                           "upstream_unavailable" if failed.status != 429 else "capacity_exceeded", headers=extra) from None
        except UpstreamRejected as rejected:
            trace.tried(rejected.attempts)
            record.deployment = rejected.deployment
            self._note_route(record, headers, admitted.skipped, rejected.attempts, rejected.deployment)
            raise ApiError(rejected.status, rejected.message, rejected.code or "upstream_rejected",
                           rejected.param) from None

    @staticmethod
    def _note_route(record: RequestRecord, headers: dict[str, str], skipped: list[str], attempts: list[Any],
                    deployment: str | None) -> None:
        """What the caller and the record are told about the route taken."""
        record.fallbacks = skipped + [str(attempt) for attempt in attempts]
        headers["x-gatehouse-fallbacks"] = ", ".join(record.fallbacks) or "none"
        if deployment is not None:
            headers["x-gatehouse-deployment"] = deployment

    def _answer(self, reply: EngineReply, record: RequestRecord, headers: dict[str, str], started: float,
                output_guard: EffectiveProfile | None, restorer: Restorer | None) -> Response:
        if restorer is not None and reply.body is not None:
            restorer.restore_response(reply.body)  # before the output rules: they judge what the caller sees
        if output_guard is not None and reply.body is not None:
            record.add_verdicts([v.as_dict() | {"output": True} for v in guard_response(output_guard, reply.body)])
        record.prompt_tokens = reply.usage.prompt_tokens
        record.completion_tokens = reply.usage.completion_tokens
        record.latency_ms = record.ttft_ms = (time.perf_counter() - started) * 1000
        if not self.records.add(record) and self.records.refuse_at_bound:
            return self._unrecorded(headers)
        return Response(orjson.dumps(reply.body), media_type=JSON, headers=headers)

    @staticmethod
    def _unrecorded(headers: dict[str, str]) -> Response:
        evidence_metrics.REFUSED.inc()
        return ApiError(503, "this gateway cannot keep decision records right now (its spool is full or its disk "
                        "refuses writes), so it answers nothing", "evidence_unavailable",
                        headers={"retry-after": "5"}).response(headers)

    def _stream(self, enforced: Enforced, reply: EngineReply, record: RequestRecord, headers: dict[str, str],
                started: float, output_guard: EffectiveProfile | None, restorer: Restorer | None) -> Response:
        if not self.records.started(record) and self.records.refuse_at_bound:  # before the first byte leaves
            refused = self._unrecorded(headers)
            closer = getattr(reply.stream, "aclose", None)
            if closer is not None:  # the engine's stream is let go once the refusal is sent
                refused.background = BackgroundTask(closer)
            return refused
        watcher = StreamGuard(output_guard, restorer) if output_guard is not None or restorer is not None else None
        if watcher is not None:
            assert reply.stream is not None  # _answer took the replies without one
            reply = EngineReply(reply.body, watcher.wrap(reply.stream), reply.usage)
        relayed: list[bool] = []  # set once the relay has finished the record

        async def closed() -> None:
            try:
                if not relayed:  # the client left before the body began: the relay never ran
                    record.error_code = "client_disconnected"
                    await self._finish(reply, record, started, watcher)
            finally:
                enforced.release()

        return ClosingStreamingResponse(self._relay(reply, record, started, relayed, watcher), closed,
                                        media_type="text/event-stream",
                                        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})

    async def _relay(self, reply: EngineReply, record: RequestRecord, started: float, relayed: list[bool],
                     watcher: StreamGuard | None) -> AsyncGenerator[bytes, None]:
        assert reply.stream is not None
        try:
            async for event in reply.stream:
                if record.ttft_ms is None:
                    record.ttft_ms = (time.perf_counter() - started) * 1000
                if event == SSE_DONE:  # the answer is complete: its record is kept before the caller hears so
                    if not self._complete(reply, record, started, watcher) and self.records.refuse_at_bound:
                        error = ApiError(503, "this gateway could not keep this request's decision record",
                                         "evidence_unavailable")
                        yield sse_event(orjson.dumps(error.body()))
                        return
                yield event
        except EngineFailure as failure:
            record.status, record.error_code = 502, failure.kind
            error = ApiError(502, f"the deployment failed mid-stream ({failure.kind})", failure.kind)
            yield sse_event(orjson.dumps(error.body()))
        except (asyncio.CancelledError, GeneratorExit):
            record.error_code = "client_disconnected"
            raise
        except Exception:  # a defect mid-stream: the caller is told, the record says so
            log.exception("stream %s failed inside the gateway", record.request_id)
            record.status, record.error_code = 500, "internal_error"
            yield sse_event(orjson.dumps(ApiError(500, "internal error; see the gateway log", "internal_error").body()))
        finally:
            relayed.append(True)
            await self._finish(reply, record, started, watcher)

    async def _finish(self, reply: EngineReply, record: RequestRecord, started: float,
                      watcher: StreamGuard | None) -> None:
        """Close the engine's stream and add the request's record, once, however the stream ended."""
        closer = getattr(reply.stream, "aclose", None)
        try:
            if closer is not None:
                await closer()
        finally:
            self._complete(reply, record, started, watcher)

    def _complete(self, reply: EngineReply, record: RequestRecord, started: float, watcher: StreamGuard | None) -> bool:
        """A stream's record, added once: at its ``[DONE]``, or however else it ended. Returns
        whether it was kept."""
        if record.kept:
            return True
        record.kept = True  # once, kept or counted lost
        record.prompt_tokens = reply.usage.prompt_tokens
        record.completion_tokens = reply.usage.completion_tokens
        record.latency_ms = (time.perf_counter() - started) * 1000
        if watcher is not None:
            record.add_verdicts([v.as_dict() | {"output": True} for v in watcher.verdicts])
        return self.records.add(record)
