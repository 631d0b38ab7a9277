"""Handing checkpoints to the witnesses as they commit, off the committing caller's path.

A checkpoint is handed over only after its transaction commits (``checkpoints``' after-commit
hook), to one delivery thread per witness: the committing caller waits at most ``COMMIT_WAIT``
seconds, a process that exits at most ``EXIT_WAIT``. Nothing reaches a witness that this
process's key did not sign (``AUDIT CHECKPOINT REJECTED``). A write that fails (or never
happened) is logged, naming the target without its credentials, and written later by
``witness.catch_up``, which the gateway's checkpoint job calls. Forked children start their
delivery threads afresh.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gatehouse.audit import checkpoints
from gatehouse.audit.witness import Witness, WitnessError, parse, state_dir
from gatehouse.core.config import Settings
from gatehouse.store.db import normalise_url

log = logging.getLogger("gatehouse.audit.witness")
COMMIT_WAIT = 1.0      # seconds a committing caller waits for its checkpoints to reach witnesses that were idle
EXIT_WAIT = 10.0       # seconds an exiting process waits for deliveries still under way
QUEUE_LIMIT = 1000     # checkpoints waiting for one witness; more are left to catch_up

Delivery = tuple[list[dict[str, Any]], Ed25519PublicKey | None, threading.Event]


class _Courier:
    """One witness's delivery thread: the checkpoints of each commit, written in order, off the
    committing caller's path. It ends when idle and starts again with the next delivery."""

    IDLE = 5.0  # seconds without work before the thread ends

    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.queue: queue.Queue[Delivery] = queue.Queue(QUEUE_LIMIT)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hand(self, items: list[dict[str, Any]], public_key: Ed25519PublicKey | None) -> threading.Event | None:
        """Queue them; the event to wait on when this witness had nothing else to do (a slow one
        already behind makes no caller wait again)."""
        idle, done = self.queue.unfinished_tasks == 0, threading.Event()
        try:
            self.queue.put_nowait((items, public_key, done))
        except queue.Full:
            log.error("AUDIT WITNESS FAILED: %s is %d deliveries behind; the checkpoint(s) at %s entries are left to "
                      "the gateway's checkpoint job", self.witness.label, QUEUE_LIMIT,
                      ", ".join(str(item["size"]) for item in items))
            return None
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name=f"audit-witness {self.witness.label}",
                                               daemon=True)
                self.thread.start()
        return done if idle else None

    def _work(self) -> None:
        while True:
            try:
                items, public_key, done = self.queue.get(timeout=self.IDLE)
            except queue.Empty:
                with self.lock:
                    if self.queue.empty():
                        self.thread = None
                        return
                continue
            try:
                self._deliver(items, public_key)
            except Exception as exc:  # never let the thread die with work queued
                log.error("AUDIT WITNESS FAILED: %s: %s", self.witness.label, type(exc).__name__)
            finally:
                done.set()
                self.queue.task_done()

    def _deliver(self, items: list[dict[str, Any]], public_key: Ed25519PublicKey | None) -> None:
        for item in sorted(items, key=lambda item: int(item["size"])):
            if public_key is None or not checkpoints.signed_by(public_key, item):
                log.error("AUDIT CHECKPOINT REJECTED: the checkpoint at %s entries is not signed by this process's "
                          "key; not written to %s", item.get("size"), self.witness.label)
                continue
            try:
                self.witness.write(item)
            except WitnessError as exc:
                log.error("AUDIT WITNESS FAILED: the checkpoint at %d entries is not yet witnessed: %s "
                          "(retried by the gateway's checkpoint job)", item["size"], exc)
                return


_couriers: dict[Witness, _Courier] = {}
_couriers_lock = threading.Lock()


def _forked() -> None:
    """A forked child has none of its parent's threads: its couriers start afresh (the parent
    delivers what it had queued)."""
    global _couriers_lock
    _couriers_lock = threading.Lock()
    for courier in _couriers.values():
        courier.queue, courier.lock, courier.thread = queue.Queue(QUEUE_LIMIT), threading.Lock(), None


os.register_at_fork(after_in_child=_forked)


def _courier(witness: Witness) -> _Courier:
    with _couriers_lock:
        if not _couriers:
            atexit.register(_at_exit)
        return _couriers.setdefault(witness, _Courier(witness))


def drain(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for every queued delivery; how many are still pending."""
    deadline = time.monotonic() + timeout
    while True:
        with _couriers_lock:
            pending = sum(courier.queue.unfinished_tasks for courier in _couriers.values())
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.01)


def _at_exit() -> None:
    left = drain(EXIT_WAIT)
    if left:
        log.error("AUDIT WITNESS FAILED: %d checkpoint delivery(ies) not finished as this process exits; the "
                  "gateway's checkpoint job (witness.catch_up) writes them", left)


def publisher(settings: Settings, public_key: Ed25519PublicKey | None = None) -> checkpoints.Publish | None:
    """What the after-commit hook calls with each committed checkpoint: hand it to every
    witness's delivery thread and wait at most ``COMMIT_WAIT``; what fails is logged there and
    left for ``catch_up``. Only checkpoints ``public_key`` (default: the key this process signs
    with) signed are written."""
    witnesses = parse(settings.audit_witness, state_dir(settings))
    if not witnesses:
        return None
    couriers = [_courier(witness) for witness in witnesses]

    def publish(items: list[dict[str, Any]]) -> None:
        key = public_key or checkpoints.signer_public_key()
        waits = [courier.hand(items, key) for courier in couriers]
        deadline = time.monotonic() + COMMIT_WAIT
        for done in waits:
            if done is not None:
                done.wait(max(0.0, deadline - time.monotonic()))
    return publish


def configure(settings: Settings) -> Ed25519PrivateKey:
    """Make this process sign the cadence as it appends to its store (the key created on first
    use, so a fresh installation has no hole) and hand every committed checkpoint to the
    witnesses."""
    key = checkpoints.ensure_signing_key(settings)
    checkpoints.configure(key, settings.audit_checkpoint_every, publisher(settings, key.public_key()),
                          normalise_url(settings.database_url))
    return key
