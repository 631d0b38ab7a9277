"""Tables. Every row that the data plane caches carries ``revision``: the value of the
global change counter when it last changed, so workers can load only what is new."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Single-row counters: ``revision`` bumps on every change the data plane caches."""

    __tablename__ = "gatehouse_meta"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    departed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, index=True)


class Identity(Base):
    __tablename__ = "identities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    owner_id: Mapped[int] = mapped_column(ForeignKey("people.id"), nullable=False, index=True)
    backup_owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    team: Mapped[str | None] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(50), nullable=False, default="dev")
    purpose: Mapped[str | None] = mapped_column(Text)
    data_clearance: Mapped[str] = mapped_column(String(32), nullable=False, default="internal")
    labels: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    review_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attention: Mapped[str | None] = mapped_column(Text)  # why the owner must act (a leak, a departed owner)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, index=True)
    # every person who has owned, backed up or requested it (e-mails): none of them may raise
    # its clearance or widen its access, whoever owns it now
    stewards: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)


class Credential(Base):
    """A key that authenticates an identity. ``id`` is the public key id; only an HMAC
    of the key is stored."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), nullable=False, index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    rotated_to: Mapped[str | None] = mapped_column(String(12))  # the successor issued by `key rotate`
    last_model: Mapped[str | None] = mapped_column(String(200))
    leaked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    leak_source: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, index=True)


class RoleAssignment(Base):
    """A control-plane role held by a person: identity-admin, policy-admin, approver, auditor."""

    __tablename__ = "role_assignments"
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(200), nullable=False)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AdminKey(Base):
    """A person's key to the admin API (same gth_ format as workload keys, a separate table:
    a workload key can never act as one)."""

    __tablename__ = "admin_keys"
    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), nullable=False, index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # issued by someone else: good only for exchanging, once, for a key of the person's own
    enrolment: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class ReviewCampaign(Base):
    __tablename__ = "review_campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_by: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # open | closed
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReviewItem(Base):
    """One identity its owner must attest in a campaign: keep, narrow or retire."""

    __tablename__ = "review_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("review_campaigns.id"), nullable=False, index=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), nullable=False, index=True)
    owner_email: Mapped[str] = mapped_column(String(320), nullable=False)
    decision: Mapped[str | None] = mapped_column(String(16))  # keep | narrow | retire | expired
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class AuditHead(Base):
    """One row holding the chain's tip; writers lock it so the chain never forks."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str] = mapped_column(String(300), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditCheckpoint(Base):
    """A signed statement "the log had ``size`` entries and its head was ``head_hash``"."""

    __tablename__ = "audit_checkpoints"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    ts: Mapped[str] = mapped_column(String(40), nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), nullable=False)
    signature: Mapped[str] = mapped_column(Text, nullable=False)


class PolicyVersion(Base):
    __tablename__ = "policy_versions"
    hash: Mapped[str] = mapped_column(String(71), primary_key=True)
    document: Mapped[dict] = mapped_column(JSON, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)
    proposers: Mapped[list | None] = mapped_column(JSON)  # others who proposed the same content later


class PolicyApproval(Base):
    """An approver's yes to one version replacing one baseline, over the plan they were shown."""

    __tablename__ = "policy_approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(71), ForeignKey("policy_versions.hash"), nullable=False, index=True)
    base_version: Mapped[str | None] = mapped_column(String(71))
    plan_id: Mapped[str] = mapped_column(String(40), nullable=False)
    inventory: Mapped[str] = mapped_column(String(64), nullable=False)
    gains: Mapped[str] = mapped_column(String(64), nullable=False)  # digest of who gains what in that plan
    approver: Mapped[str] = mapped_column(String(200), nullable=False)
    acknowledged: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # the roles the approver held when approving, each with when that grant was made: the
    # approval counts only while that same grant stands (ADR 0017)
    roles: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)


class PolicyActivation(Base):
    """Every time the active version changed: apply, rollback, break-glass, its expiry."""

    __tablename__ = "policy_activations"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(71), ForeignKey("policy_versions.hash"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    previous: Mapped[str | None] = mapped_column(String(71))
    back_to: Mapped[str | None] = mapped_column(String(71))  # what `policy rollback` returns to from here
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # break-glass only
    reason: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))  # break-glass: who reviewed it afterwards
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_note: Mapped[str | None] = mapped_column(Text)


class GatewayWorker(Base):
    """A gateway worker's heartbeat: which policy version it enforces, as of when."""

    __tablename__ = "gateway_workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid
    policy_version: Mapped[str | None] = mapped_column(String(71))
    problem: Mapped[str | None] = mapped_column(Text)  # why it could not enforce the active version
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DecisionRecord(Base):
    """One data-plane request. No prompt or completion text."""

    __tablename__ = "decision_records"
    request_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    identity: Mapped[str | None] = mapped_column(String(100), index=True)
    key_id: Mapped[str | None] = mapped_column(String(12))
    endpoint: Mapped[str] = mapped_column(String(40), nullable=False)
    alias: Mapped[str | None] = mapped_column(String(200))
    deployment: Mapped[str | None] = mapped_column(String(200))
    fallbacks: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    policy_version: Mapped[str | None] = mapped_column(String(71))
    data_class: Mapped[str | None] = mapped_column(String(16))
    guardrails: Mapped[list | None] = mapped_column(JSON)  # verdicts: rule, action, field, offsets — never text
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    ttft_ms: Mapped[float | None] = mapped_column(Float)


class UsageMinute(Base):
    """One worker's counts for one minute and one identity, alias or deployment (ADR 0010).

    Each worker rewrites its own rows for the minutes it is still counting, so no two workers
    ever write the same row and thresholds add them up across workers and replicas.
    """

    __tablename__ = "usage_minutes"
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # identity | alias | deployment | gateway
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)          # answered 5xx
    blocked: Mapped[int] = mapped_column(Integer, nullable=False, default=0)         # refused by a guardrail
    guardrail_hits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # requests with a verdict
    upstream_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    upstream_errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    latency: Mapped[list] = mapped_column(JSON, nullable=False, default=list)  # counts per LATENCY_BUCKETS bucket


class Incident(Base):
    """A threshold crossed: opened by the monitor, escalated step by step until a person
    acknowledges it, closed by a person."""

    __tablename__ = "incidents"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # inc-<hex>
    threshold: Mapped[str] = mapped_column(String(64), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    metric: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # open | acknowledged | closed
    policy_version: Mapped[str] = mapped_column(String(71), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)  # when opened
    limit: Mapped[float] = mapped_column(Float, nullable=False)
    condition: Mapped[str] = mapped_column(Text, nullable=False)  # "block_rate 0.12 > 0.05 over 10m (41 requests)"
    breaching: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    breaching_since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # ladder delays count from here
    last_value: Mapped[float] = mapped_column(Float, nullable=False)
    last_checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    steps: Mapped[list] = mapped_column(JSON, nullable=False, default=list)  # escalation steps taken, with outcomes
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class RecoveryCode(Base):
    """One of the recovery codes made at bootstrap (only its HMAC is kept): several, presented
    together, appoint an identity-admin when none is left."""

    __tablename__ = "recovery_codes"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
