"""What a policy says about one deployment: its engine, address, model, where its data goes,
the credential Gatehouse presents to it, and its timeouts and embedded-engine settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gatehouse.core.classification import DataClass
from gatehouse.core.schema import Strict

OPENAI_COMPATIBLE = ("openai", "vllm", "sglang", "llama-server", "ollama", "tgi")
EngineKind = Literal["embedded", "openai", "vllm", "sglang", "llama-server", "ollama", "tgi"]


class CredentialRef(Strict):
    """Where the secret that Gatehouse presents to an upstream lives. Never the secret itself."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (an environment variable name) or 'file' (a path)")
        return self


class Timeouts(Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open the connection")
    first_token: float = Field(60.0, gt=0, description="seconds until the response (or first streamed chunk) starts")
    read: float = Field(120.0, gt=0, description="seconds allowed between two streamed chunks")


class EmbeddedSettings(Strict):
    slots: int = Field(8, ge=1, le=64, description="sequences decoded together (continuous batching)")
    context_size: int = Field(2048, ge=128, le=131072, description="tokens per sequence: prompt + completion")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads (default: every CPU this process may use)")
    batch_size: int = Field(512, ge=8, le=8192, description="tokens per decode step")
    prefill_chunk: int = Field(128, ge=1, le=8192,
                               description="prompt tokens per step while other sequences are decoding")
    max_waiting: int = Field(64, ge=0, le=10000, description="queued requests before 429")

    @model_validator(mode="after")
    def _batch_holds_every_slot(self) -> EmbeddedSettings:
        if self.slots > self.batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least slots ({self.slots}): "
                             "every decoding slot adds a token to each step's batch")
        return self


class Deployment(Strict):
    engine: EngineKind
    model: str = Field(min_length=1, max_length=300)
    url: str | None = None
    model_path: str | None = None
    location: Literal["on-prem", "cloud"] = "on-prem"
    data_classes: tuple[DataClass, ...] = ("public", "internal")
    credential: CredentialRef | None = None
    timeouts: Timeouts = Timeouts()
    settings: EmbeddedSettings | None = None
    context_length: int | None = Field(None, ge=2, le=10_000_000, description=(
        "an upstream's context window in tokens (vLLM's max_model_len): bounds max_tokens; "
        "embedded deployments have settings.context_size"))

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _engine_fields(self) -> Deployment:
        if self.engine == "embedded":
            if self.url or self.credential:
                raise ValueError("an embedded deployment takes no 'url' or 'credential'")
        else:
            if not self.url:
                raise ValueError(f"a {self.engine} deployment needs 'url' (its OpenAI-compatible base URL)")
            if self.settings is not None or self.model_path is not None:
                raise ValueError("'settings' and 'model_path' apply to embedded deployments only")
        if self.engine == "embedded" and self.context_length is not None:
            raise ValueError("an embedded deployment's context is settings.context_size, not 'context_length'")
        if not self.data_classes:
            raise ValueError("'data_classes' must list at least one data class")
        return self
