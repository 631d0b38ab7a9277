"""The decision-record spool: append-only segment files between the request path and the store.

A request's record is written here (one JSON line, one ``write``) before its answer leaves,
so a worker killed at any point after that loses nothing it answered: the page cache holds
the line and the next drainer reads it. A background thread fsyncs every few milliseconds;
that interval is the power-loss window. The record writer drains the segments into the
store in order and deletes each one once every line in it is stored (ADR 0014).

Each segment is locked (``flock``) by the worker that writes it for as long as it exists.
A segment nobody holds is an orphan of a worker that died: any worker sharing the folder
claims it by taking the lock, drains it and deletes it. Storing a record twice is harmless
(the store ignores a request id it has), so a crash between storing and deleting costs a
second look, never a duplicate.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("gatehouse.records")
SEGMENT_BYTES = 8 * 1024 * 1024  # a segment is closed and a new one begun past this size
SUFFIX = ".spool"


@dataclass(eq=False)
class Segment:
    """One spool file. ``written`` is where complete lines end (set after each write returns);
    ``stored`` is how far the store has them."""

    path: Path
    lock_fd: int                   # held (flock) until the segment is deleted; also read through
    write_fd: int | None = None    # None once closed for writing (rotated, or an orphan)
    written: int = 0
    stored: int = 0
    lines: int = 0                 # written since opened
    orphan: bool = False

    @property
    def pending(self) -> int:
        return self.written - self.stored

    def read(self, limit: int) -> tuple[list[bytes], int]:
        """Complete lines after ``stored``, up to about ``limit`` bytes; and where they end."""
        end = min(self.written, self.stored + limit)
        if end <= self.stored:
            return [], self.stored
        data = os.pread(self.lock_fd, end - self.stored, self.stored)
        cut = data.rfind(b"\n") + 1
        if cut == 0 and end < self.written:  # one line longer than limit: read it whole
            data = os.pread(self.lock_fd, self.written - self.stored, self.stored)
            cut = data.rfind(b"\n") + 1
        return data[:cut].splitlines(), self.stored + cut

    def tail(self, start: int) -> bytes:
        """The bytes from ``start`` to the end (an orphan's incomplete last line)."""
        return os.pread(self.lock_fd, self.written - start, start)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


@dataclass(eq=False)
class Spool:
    """This worker's segments, the orphans it claimed, and the fsync thread."""

    folder: Path
    worker: str
    fsync_interval: float = 0.05
    segment_bytes: int = SEGMENT_BYTES
    _segments: list[Segment] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _active: Segment | None = None
    _to_close: list[int] = field(default_factory=list)  # write fds of rotated segments, fsynced then closed
    _dirty: bool = False
    _stopping: threading.Event = field(default_factory=threading.Event)
    _syncer: threading.Thread | None = None
    synced_at: float = 0.0

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        self._active = self._new_segment()
        self._syncer = threading.Thread(target=self._sync_loop, name="gatehouse-spool-fsync", daemon=True)
        self._syncer.start()

    def _new_segment(self) -> Segment:
        """A fresh segment, locked before it has its final name so no scan can take it for an orphan."""
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in self.worker)
        name = f"{time.time_ns():020d}-{safe}"
        draft = self.folder / f".{name}.new"
        write_fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        lock_fd = os.open(draft, os.O_RDONLY | os.O_NOFOLLOW)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        path = self.folder / f"{name}{SUFFIX}"
        os.rename(draft, path)
        segment = Segment(path, lock_fd, write_fd)
        with self._guard:
            self._segments.append(segment)
        return segment

    # -- the request path (event loop) ----------------------------------------------------------

    def append(self, line: bytes) -> None:
        """One record (a JSON line without its newline). Raises OSError when the disk refuses it."""
        active = self._active
        if active is None or active.write_fd is None:
            raise OSError(errno.EBADF, "the spool is closed")
        data = line + b"\n"
        written = os.write(active.write_fd, data)
        if written != len(data):  # a short write to a regular file: the disk is full
            os.ftruncate(active.write_fd, active.written)
            raise OSError(errno.ENOSPC, "short write to the spool")
        active.written += written
        active.lines += 1
        self._dirty = True
        if active.written >= self.segment_bytes:
            self._rotate(active)

    def _rotate(self, full: Segment) -> None:
        self._active = self._new_segment()
        fd, full.write_fd = full.write_fd, None
        if fd is not None:
            with self._guard:
                self._to_close.append(fd)

    @property
    def pending(self) -> int:
        """Bytes written and not yet stored, in this worker's segments and the orphans it holds."""
        with self._guard:
            return sum(segment.pending for segment in self._segments)

    # -- the drainer (a thread) -----------------------------------------------------------------

    def segments(self) -> list[Segment]:
        with self._guard:
            return list(self._segments)

    def stored(self, segment: Segment, upto: int) -> bool:
        """The store has every line of ``segment`` before ``upto``. A segment closed for writing
        and stored to its end is deleted: returns whether that happened."""
        segment.stored = upto
        if segment.write_fd is not None or segment.stored < segment.written:
            return False
        with self._guard:
            if segment not in self._segments:
                return True
            self._segments.remove(segment)
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        os.close(segment.lock_fd)
        return True

    def claim_orphans(self) -> int:
        """Take the segments of workers that died (nobody holds their lock); returns how many."""
        mine = {segment.path for segment in self.segments()}
        claimed = 0
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:  # drained and deleted by another worker meanwhile
                continue
            if not _try_lock(fd):
                os.close(fd)
                continue
            if not path.exists():  # deleted after we opened it: its claimer finished
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            with self._guard:
                self._segments.insert(0, Segment(path, fd, None, written=size, orphan=True))
            claimed += 1
        if claimed:
            log.warning("claimed %d spool segment(s) left by a worker that stopped", claimed)
        return claimed

    def set_aside(self, segment: Segment, data: bytes) -> Path:
        """Keep lines the store refused (or a torn last line) in ``rejected/``, for an
        investigator: never dropped, never retried for ever."""
        folder = self.folder / "rejected"
        folder.mkdir(exist_ok=True, mode=0o700)
        path = folder / (segment.path.stem + ".jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data if data.endswith(b"\n") else data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    # -- durability -----------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self._stopping.wait(max(self.fsync_interval, 0.001)):  # 0: as often as the disk allows
            self.sync()

    def sync(self) -> None:
        with self._guard:
            closing, self._to_close = self._to_close, []
        for fd in closing:
            os.fsync(fd)
            os.close(fd)
        active = self._active
        if self._dirty and active is not None and active.write_fd is not None:
            self._dirty = False
            try:
                os.fsync(active.write_fd)
            except OSError as exc:  # closed by close() meanwhile, or the disk failed
                log.error("spool fsync failed: %s", type(exc).__name__)
        self.synced_at = time.monotonic()

    def close(self) -> None:
        """Stop appending; fsync what was written. Segments not yet stored stay for the next worker."""
        self._stopping.set()
        if self._syncer is not None:
            self._syncer.join()
        self.sync()
        active, self._active = self._active, None
        if active is not None and active.write_fd is not None:
            fd, active.write_fd = active.write_fd, None
            os.fsync(fd)
            os.close(fd)
            if active.stored >= active.written:
                self.stored(active, active.written)
        for segment in self.segments():
            os.close(segment.lock_fd)  # unlocked: whoever starts next claims what is left
        with self._guard:
            self._segments.clear()
