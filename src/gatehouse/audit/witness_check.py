"""The auditor's side of the witnesses: reading what a witness holds, as untrusted input, and
checking it against the store (``gatehouse audit verify --witness``).

A witness's files may be anything by the time an auditor reads them: a FIFO, a device, a link,
a huge file, not JSON, not a checkpoint. Nothing here waits on such a file or reads it whole;
each is a problem of that witness, never an exception.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.audit import checkpoints
from gatehouse.store.models import AuditCheckpoint

FILE_NAME = re.compile(r"^(\d{12})\.json$")  # a dir: witness's file for the checkpoint at that size
MAX_FILE = checkpoints.MAX_FILE
MAX_LINES = 1 << 30    # bytes a JSON-lines file of checkpoints may have


def parse_checkpoint(body: bytes) -> dict[str, Any]:
    """One checkpoint's JSON, checked for its fields (``checkpoints.fields``); ValueError says why not."""
    try:
        item = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("is not JSON") from None
    try:
        checkpoints.fields(item)
    except ValueError as exc:
        raise ValueError(f"is not a checkpoint: {exc}") from None
    return dict(item)


def read_exported(path: Path) -> Any:
    """An exported checkpoint file's JSON (``audit checkpoint --export``), read safely: a FIFO,
    a device or a huge file is refused with a ValueError, never waited on or read whole."""
    body = checkpoints.read_small_file(path, follow=True)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("is not JSON") from None



@dataclass(frozen=True)
class Held:
    """What a witness's copy holds: its checkpoints, and what in it could not be read as one."""
    items: list[dict[str, Any]]
    problems: list[str]


def read(path: Path) -> Held:
    """A witness's checkpoints: a ``dir:`` witness's directory, or a JSON-lines file (one
    checkpoint a line: what a webhook receiver might keep). Nothing here raises: a file that is
    not a regular one (a FIFO, a device, a link inside the directory), too large, not JSON or
    not a checkpoint is one of its problems."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        return Held([], [f"cannot be read ({exc.strerror or type(exc).__name__})"])
    if is_dir:
        return _read_dir(path)
    return _read_lines(path)


def _read_dir(path: Path) -> Held:
    items, problems = [], []
    try:
        names = sorted(name for name in os.listdir(path) if FILE_NAME.match(name))
    except OSError as exc:
        return Held([], [f"cannot be listed ({exc.strerror or type(exc).__name__})"])
    for name in names:
        try:
            item = parse_checkpoint(checkpoints.read_small_file(path / name))
        except ValueError as exc:
            problems.append(f"{name} {exc}")
            continue
        if item["size"] != int(name[:12]):
            problems.append(f"{name} holds the checkpoint at {item['size']} entries")
        else:
            items.append(item)
    return Held(items, problems)


def _read_lines(path: Path) -> Held:
    items, problems = [], []
    try:
        fd = checkpoints.open_regular(path, MAX_LINES, follow=True)
    except ValueError as exc:
        return Held([], [str(exc)])
    try:
        with os.fdopen(fd, "rb") as handle:
            total = 0
            for number, line in enumerate(iter(lambda: handle.readline(MAX_FILE + 1), b""), 1):
                total += len(line)
                if total > MAX_LINES:
                    problems.append(f"is larger than {MAX_LINES} bytes")
                    break
                if not line.strip():
                    continue
                try:
                    if len(line) > MAX_FILE:
                        raise ValueError(f"is longer than {MAX_FILE} bytes")
                    items.append(parse_checkpoint(line))
                except ValueError as exc:
                    problems.append(f"line {number} {exc}")
    except OSError as exc:
        problems.append(f"cannot be read ({exc.strerror or type(exc).__name__})")
    return Held(items, problems)


@dataclass(frozen=True)
class WitnessCheck:
    witness: str
    checkpoints: int          # how many it holds
    verified: int             # how many verified before the first problem
    newest: int | None        # the largest size it holds
    lag: int                  # stored checkpoints it does not hold (a warning, not a failure)
    problem: str | None = None
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {"witness": self.witness, "ok": self.ok, "checkpoints": self.checkpoints, "verified": self.verified,
                "newest": self.newest, "lag": self.lag, "problem": self.problem}


def check(session: Session, public_key: Ed25519PublicKey, name: str, held: Held) -> WitnessCheck:
    """Each witnessed checkpoint must be signed by the key and match the store's entry at its
    size (which must still exist): a rewrite re-signed with a stolen key still differs here.
    What could not be read, and a witness that holds nothing while the store holds checkpoints
    (the wrong path, a volume not mounted), are problems of this witness."""
    ordered = sorted(held.items, key=lambda item: int(item["size"]))
    sizes = {int(item["size"]) for item in ordered}
    stored = set(session.execute(select(AuditCheckpoint.size)).scalars())
    newest = max(sizes, default=None)
    lag = len(stored - sizes)
    problems = [f"witness {name}: {_summed(held.problems)}"] if held.problems else []
    if not ordered and stored and not held.problems:
        problems.append(f"witness {name} holds no checkpoint, but the store holds {len(stored)}: the wrong path, a "
                        "volume not mounted, or a witness that never received one")
    verified, last_good, first_bad = 0, 0, None
    for item in ordered:
        result = checkpoints.verify_exported(session, public_key, item, last_good)
        if not result.ok:
            problems.insert(0, f"witness {name}: {result.problem}")
            first_bad = result.first_bad_seq
            break
        verified, last_good = verified + 1, int(item["size"])
    return WitnessCheck(name, len(ordered), verified, newest, lag, "; ".join(problems) or None, first_bad)


def _summed(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more such)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"
