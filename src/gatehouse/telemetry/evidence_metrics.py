"""Metrics of the evidence path and of the worker's view of the control plane: what an
operator alerts on before an investigation finds a hole."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SPOOL_BYTES = Gauge("gatehouse_evidence_spool_bytes", "Decision records written to the spool and not yet in the store",
                    multiprocess_mode="livesum")
STORE_DOWN = Gauge("gatehouse_evidence_store_unreachable", "1 while the record writer cannot reach the store",
                   multiprocess_mode="livemax")
STORED = Counter("gatehouse_evidence_records_stored", "Decision records written to the store")
LOST = Counter("gatehouse_evidence_records_lost",
               "Decision records of answered requests that could not be kept (spool full or unwritable, "
               "GATEHOUSE_EVIDENCE_AT_BOUND=serve)")
REFUSED = Counter("gatehouse_evidence_refused_requests",
                  "Requests refused with 503 evidence_unavailable because their record could not be kept")
SET_ASIDE = Counter("gatehouse_evidence_records_set_aside",
                    "Spooled records the store refused as invalid, kept in the spool's rejected/ folder")
STALENESS = Gauge("gatehouse_control_plane_staleness_seconds",
                  "Seconds since this worker last saw the store's keys and policy", multiprocess_mode="livemax")
STALE_REFUSED = Counter("gatehouse_control_plane_refused_requests",
                        "Requests refused with 503 control_plane_unreachable (keys and policy older than the bound)")
WITNESS_LAG = Gauge("gatehouse_audit_witness_lag", "Stored audit checkpoints a witness lacks (after the last catch-up)",
                    ["gatehouse_witness"], multiprocess_mode="livemax")
