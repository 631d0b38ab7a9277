"""Process-wide settings, read from the environment.

Workers started by ``gatehouse serve --workers N`` inherit these variables, so every
process agrees on where the data lives without passing objects across a fork.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gatehouse.core.durations import parse_duration

DEFAULT_MAX_KEY_TTL = timedelta(days=90)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    policy_path: Path
    max_key_ttl: timedelta
    max_body_bytes: int
    notify_webhook: str | None = None       # where owners are told about leaks and orphaned identities
    leak_report_token: str | None = None    # bearer token secret scanners send to POST /admin/leaks
    approval_exempt: frozenset[str] = frozenset({"dev"})  # environments whose new identities need no approval
    key_rotation_age: timedelta = timedelta(days=90)     # keys older than this are findings (key_too_old)
    audit_key_path: Path | None = None                   # Ed25519 key signing audit checkpoints
    audit_checkpoint_every: int = 100                    # entries between checkpoints
    audit_checkpoint_minutes: float = 10.0               # the gateway also signs this often (if the log moved)
    pager_url: str | None = None                         # Events API v2 endpoint incidents page
    pager_routing_key: str | None = field(default=None, repr=False)  # the pager's integration key (a secret)
    monitor_interval: float = 15.0                       # seconds between threshold evaluations
    break_glass_per_person: int = 1                      # break-glass activations one person may make per window
    break_glass_per_installation: int = 3                # … and everyone together
    break_glass_window: timedelta = timedelta(hours=24)  # the window both limits count over
    environment: str = "prod"                            # this installation's: dev relaxes evidence and metrics defaults
    spool_dir: Path | None = None                        # decision-record spool (default $GATEHOUSE_HOME/spool)
    spool_max_bytes: int = 512 * 1024 * 1024             # records not yet in the store the spool may hold
    spool_fsync_ms: float = 50.0                         # the power-loss window: records written but not yet fsynced
    evidence_at_bound: str = ""                          # refuse | serve (default: serve in dev, refuse elsewhere)
    max_staleness: float = 30.0                          # seconds a worker serves without seeing the store's keys/policy
    audit_witness: tuple[str, ...] = ()                  # where checkpoints are also written: dir:/path, https://…
    audit_cadence_from: int | None = None                # audit verify: the size the cadence is required from
    metrics_token: str | None = field(default=None, repr=False)  # bearer token /metrics asks for
    metrics_identity_label: str = "name"                 # name | team | none: how /metrics labels identities

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("GATEHOUSE_HOME") or Path.home() / ".gatehouse").expanduser()
        database_url = os.environ.get("GATEHOUSE_DATABASE_URL") or f"sqlite:///{home / 'gatehouse.db'}"
        policy_path = Path(os.environ.get("GATEHOUSE_POLICY") or home / "policy.yaml").expanduser()
        max_ttl_text = os.environ.get("GATEHOUSE_MAX_KEY_TTL")
        max_key_ttl = parse_duration(max_ttl_text) if max_ttl_text else DEFAULT_MAX_KEY_TTL
        max_body_bytes = int(os.environ.get("GATEHOUSE_MAX_BODY_BYTES") or 4 * 1024 * 1024)
        return cls(home, database_url, policy_path, max_key_ttl, max_body_bytes,
                   notify_webhook=os.environ.get("GATEHOUSE_NOTIFY_WEBHOOK") or None,
                   leak_report_token=os.environ.get("GATEHOUSE_LEAK_REPORT_TOKEN") or None,
                   approval_exempt=_environments(os.environ.get("GATEHOUSE_APPROVAL_EXEMPT_ENVIRONMENTS", "dev")),
                   key_rotation_age=parse_duration(os.environ.get("GATEHOUSE_KEY_ROTATION_AGE") or "90d"),
                   audit_key_path=Path(os.environ.get("GATEHOUSE_AUDIT_SIGNING_KEY") or home / "audit-signing-key"),
                   audit_checkpoint_every=int(os.environ.get("GATEHOUSE_AUDIT_CHECKPOINT_EVERY") or 100),
                   audit_checkpoint_minutes=float(os.environ.get("GATEHOUSE_AUDIT_CHECKPOINT_MINUTES") or 10),
                   pager_url=os.environ.get("GATEHOUSE_PAGER_URL") or None,
                   pager_routing_key=os.environ.get("GATEHOUSE_PAGER_ROUTING_KEY") or None,
                   monitor_interval=float(os.environ.get("GATEHOUSE_MONITOR_INTERVAL") or 15),
                   break_glass_per_person=int(os.environ.get("GATEHOUSE_BREAK_GLASS_PER_PERSON") or 1),
                   break_glass_per_installation=int(os.environ.get("GATEHOUSE_BREAK_GLASS_PER_INSTALLATION") or 3),
                   break_glass_window=parse_duration(os.environ.get("GATEHOUSE_BREAK_GLASS_WINDOW") or "24h"),
                   environment=(os.environ.get("GATEHOUSE_ENVIRONMENT") or "prod").strip().lower(),
                   spool_dir=Path(os.environ["GATEHOUSE_SPOOL_DIR"]).expanduser()
                   if os.environ.get("GATEHOUSE_SPOOL_DIR") else None,
                   spool_max_bytes=int(os.environ.get("GATEHOUSE_SPOOL_MAX_BYTES") or 512 * 1024 * 1024),
                   spool_fsync_ms=float(os.environ.get("GATEHOUSE_SPOOL_FSYNC_MS") or 50),
                   evidence_at_bound=(os.environ.get("GATEHOUSE_EVIDENCE_AT_BOUND") or "").strip().lower(),
                   max_staleness=float(os.environ.get("GATEHOUSE_MAX_STALENESS") or 30),
                   audit_witness=tuple(part.strip() for part in (os.environ.get("GATEHOUSE_AUDIT_WITNESS") or "").split(",")
                                       if part.strip()),
                   audit_cadence_from=_cadence_from(os.environ.get("GATEHOUSE_AUDIT_CADENCE_FROM") or ""),
                   metrics_token=os.environ.get("GATEHOUSE_METRICS_TOKEN") or None,
                   metrics_identity_label=(os.environ.get("GATEHOUSE_METRICS_IDENTITY_LABEL") or "name").strip().lower())

    def __post_init__(self) -> None:
        if self.evidence_at_bound not in ("", "refuse", "serve"):
            raise ValueError(f"GATEHOUSE_EVIDENCE_AT_BOUND must be refuse or serve, not {self.evidence_at_bound!r}")
        if self.metrics_identity_label not in ("name", "team", "none"):
            raise ValueError("GATEHOUSE_METRICS_IDENTITY_LABEL must be name, team or none, "
                             f"not {self.metrics_identity_label!r}")
        if self.spool_max_bytes <= 0 or self.spool_fsync_ms < 0 or self.max_staleness <= 0:
            raise ValueError("GATEHOUSE_SPOOL_MAX_BYTES and GATEHOUSE_MAX_STALENESS must be positive, "
                             "GATEHOUSE_SPOOL_FSYNC_MS not negative")

    @property
    def dev(self) -> bool:
        return self.environment == "dev"

    @property
    def refuse_without_evidence(self) -> bool:
        """At the spool's bound: refuse requests (503 evidence_unavailable) rather than serve
        them unrecorded. The default everywhere but ``dev``."""
        return self.evidence_at_bound == "refuse" or (not self.evidence_at_bound and not self.dev)

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.home / "spool"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def pepper(self) -> bytes:
        """The server-side secret that keys are HMACed under.

        ``GATEHOUSE_PEPPER`` wins (for replicas that share a database); otherwise a file
        in the home directory, created with mode 0600 on first use.
        """
        from_env = os.environ.get("GATEHOUSE_PEPPER")
        if from_env:
            return from_env.encode()
        path = self.home / "pepper"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".pepper.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # never a prepared file
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)  # atomic and exclusive: a racing process keeps its own or ours
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        pepper = path.read_text().strip()
        if not pepper:
            raise ValueError(f"{path} is empty: restore it from backup (every key hash depends on it)")
        return pepper.encode()


def _cadence_from(text: str) -> int | None:
    """``GATEHOUSE_AUDIT_CADENCE_FROM``: the size from which the checkpoint cadence is required
    (where it was changed); unset for "from the first stored checkpoint"."""
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise ValueError("GATEHOUSE_AUDIT_CADENCE_FROM must be a whole number of entries from 1 on "
                         "(a stored checkpoint's size)")
    return int(text)


def _environments(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())
