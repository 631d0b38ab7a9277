"""The hash-chained control-plane audit log."""

from gatehouse.audit.log import VerifyResult, append, verify

__all__ = ["VerifyResult", "append", "verify"]
