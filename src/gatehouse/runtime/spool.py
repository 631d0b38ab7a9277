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
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gatehouse.core.errors import GatehouseError

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


def check_private(folder: Path) -> None:
    """The spool holds evidence: its folder must be this user's own, not a link, and closed
    to everyone else (nobody else may plant records in it or delete them)."""
    facts = os.lstat(folder)
    if stat.S_ISLNK(facts.st_mode) or not stat.S_ISDIR(facts.st_mode):
        raise SpoolError(f"the spool folder {folder} must be a directory, not a link")
    if facts.st_uid != os.geteuid():
        raise SpoolError(f"the spool folder {folder} belongs to another user (uid {facts.st_uid}): "
                         "give it to the user Gatehouse runs as, mode 0700")
    if stat.S_IMODE(facts.st_mode) & 0o077:
        raise SpoolError(f"the spool folder {folder} is open to other users (mode "
                         f"{stat.S_IMODE(facts.st_mode):o}): `chmod 700 {folder}` after checking what is in it")


class SpoolError(GatehouseError):
    """The spool cannot be used safely (its folder's owner or mode)."""


def prepare(folder: Path) -> None:
    """Create the spool folder private (its parents as the umask says), or refuse one that is not."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(exist_ok=True, mode=0o700)
    check_private(folder)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    _appending: threading.Lock = field(default_factory=threading.Lock)
    _active: Segment | None = None
    _to_close: list[int] = field(default_factory=list)  # write fds of rotated segments, fsynced then closed
    _dirty: bool = False
    _stopping: threading.Event = field(default_factory=threading.Event)
    _syncer: threading.Thread | None = None
    synced_at: float = 0.0

    def open(self) -> None:
        prepare(self.folder)
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
        _sync_folder(self.folder)  # the name survives a power loss, not only the lines
        segment = Segment(path, lock_fd, write_fd)
        with self._guard:
            self._segments.append(segment)
        return segment

    # -- the request path (event loop) ----------------------------------------------------------

    def append(self, line: bytes) -> None:
        """One record (a JSON line without its newline). Raises OSError when the disk refuses
        it; then nothing of it is left in the segment."""
        with self._appending:  # the event loop, and the drainer writing a dead worker's unfinished streams
            active = self._active
            if active is None or active.write_fd is None:
                raise OSError(errno.EBADF, "the spool is closed")
            data = line + b"\n"
            try:
                written = os.write(active.write_fd, data)
            except OSError:
                os.ftruncate(active.write_fd, active.written)  # a partial line would glue onto the next
                raise
            if written != len(data):  # a short write to a regular file: the disk is full
                os.ftruncate(active.write_fd, active.written)
                raise OSError(errno.ENOSPC, "short write to the spool")
            active.written += written
            active.lines += 1
            self._dirty = True
            if active.written >= self.segment_bytes:
                try:
                    self._rotate(active)
                except OSError as exc:  # the line is kept; the segment grows until a new one can be made
                    log.error("cannot start a new spool segment (%s): %s keeps growing", type(exc).__name__,
                              active.path.name)

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
        claimed: list[Segment] = []
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
            facts = os.fstat(fd)
            if facts.st_uid != os.geteuid() or stat.S_IMODE(facts.st_mode) & 0o077 or not stat.S_ISREG(facts.st_mode):
                os.close(fd)  # not one of ours: never stored as evidence, never deleted
                log.error("spool segment %s is not this user's private file: left alone (not stored)", path.name)
                continue
            claimed.append(Segment(path, fd, None, written=facts.st_size, orphan=True))
        if claimed:
            with self._guard:  # before this worker's own, oldest first
                self._segments[:0] = claimed
            log.warning("claimed %d spool segment(s) left by a worker that stopped", len(claimed))
        return len(claimed)

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
