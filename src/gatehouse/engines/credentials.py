"""Resolve the secret Gatehouse presents to an upstream from its reference (env var or file).

The secret is read when the engine starts and lives only in memory; the database and the
policy hold the reference, never the value. Two kinds of rule:

- where a reference may point (``credential_problem``), checked when a policy is proposed and
  again when a worker loads it: never one of Gatehouse's own settings (``GATEHOUSE_*``) or files
  (``$GATEHOUSE_HOME``, except ``$GATEHOUSE_HOME/credentials/``; the audit signing key, the spool,
  the SQLite store wherever they are), and a file only by an absolute path (``~/`` counts);
- what the value may be (``value_problem``), checked when a worker reads it: one token of
  visible ASCII, the characters an HTTP header carries, once the whitespace around it is gone.

Messages name the deployment and the reference, never the value or any part of it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.engines.spec import CredentialRef

MAX_FILE_BYTES = 64 * 1024  # a credential is one line; a bigger file is the wrong file
SURROUNDING = " \t\r\n\f\v"  # what is stripped from both ends (a trailing newline, mostly)


class CredentialProblem(GatehouseError):
    """A deployment's credential cannot be used. The message names the deployment and the
    reference, never the value."""


def own_files(settings: Settings) -> tuple[Path, ...]:
    """Gatehouse's own secrets and evidence that may live outside its home directory."""
    paths = [settings.spool_path]
    if settings.audit_key_path is not None:
        paths.append(settings.audit_key_path)
    if settings.database_url.startswith("sqlite:///"):
        paths.append(Path(settings.database_url.removeprefix("sqlite:///")))
    return tuple(paths)


def credential_file(ref: CredentialRef) -> Path:
    """The file a reference names, ``~`` expanded and every link followed; ``ValueError``
    (saying why) when it names none that can be checked."""
    text = ref.file or ""
    if "\x00" in text:
        raise ValueError("a credential file's path cannot hold a NUL byte")
    path = Path(os.path.expanduser(text))  # an unknown ~user stays as written (Path.expanduser raises)
    if not path.is_absolute():
        raise ValueError(f"a credential file must be an absolute path (or start with ~/), not {text!r}: a relative "
                         "one would depend on the directory each worker starts in")
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of links, a name too long
        raise ValueError(f"a credential file's path {text!r} cannot be resolved (a loop of links?)") from None


def credential_problem(ref: CredentialRef | None, home: Path | None = None, *,
                       reserved: Iterable[Path] = ()) -> str | None:
    """Why this reference must not be used: Gatehouse's own secrets (its GATEHOUSE_* settings,
    the files in its home directory such as the pepper and the audit signing key, the files
    in ``reserved``) are never sent to an upstream. Files under ``$GATEHOUSE_HOME/credentials/``
    are allowed; a file is named by an absolute path (or ``~/…``), never relative to wherever
    the worker happens to run."""
    if ref is None:
        return None
    if ref.env is not None and ref.env.upper().startswith("GATEHOUSE_"):
        return f"a credential cannot come from {ref.env}: GATEHOUSE_* variables are Gatehouse's own settings"
    if ref.file is None:
        return None
    try:
        path = credential_file(ref)
    except ValueError as exc:
        return str(exc)
    if home is not None:
        own = home.expanduser().resolve()
        if path.is_relative_to(own) and not path.is_relative_to(own / "credentials"):
            return f"a credential cannot be read from {path}: files in {own} are Gatehouse's own (use {own}/credentials/)"
    for reserved_path in reserved:
        mine = reserved_path.expanduser().resolve()
        if path.is_relative_to(mine):
            return f"a credential cannot be read from {path}: it is Gatehouse's own ({mine})"
    return None


def value_problem(value: str) -> str | None:
    """What is wrong with a credential's value (already stripped), in words that give none of
    it away: which kinds of character it holds that an HTTP header cannot carry."""
    if not value:
        return "is empty"
    kinds: list[str] = []
    for kind, found in (
        ("a line break", any(ch in "\r\n" for ch in value)),
        ("a NUL byte", "\x00" in value),
        ("a control character", any((ord(ch) < 0x20 and ch not in "\r\n\x00 \t") or ord(ch) == 0x7F for ch in value)),
        ("a space or tab", any(ch in " \t" for ch in value)),
        ("a non-ASCII character (a byte-order mark, say)", any(ord(ch) > 0x7F for ch in value)),
    ):
        if found:
            kinds.append(kind)
    if not kinds:
        return None
    return (f"contains {', '.join(kinds)}: a credential must be one token of visible ASCII (what an HTTP header "
            "carries); rewrite it without them")


def _read(path: Path) -> str:
    """The file's text, read without following a link put there since it was checked and
    without blocking on a pipe. Latin-1 keeps every byte as one character for the checks."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise ValueError(f"is larger than {MAX_FILE_BYTES // 1024} KiB (a credential is one line)")
    return b"".join(chunks).decode("latin-1")


def resolve_credential(deployment_name: str, ref: CredentialRef | None, home: Path | None = None, *,
                       reserved: Iterable[Path] = ()) -> str | None:
    """The value to present, checked; ``CredentialProblem`` when it cannot be used."""
    if ref is None:
        return None
    problem = credential_problem(ref, home, reserved=reserved)
    if problem:
        raise CredentialProblem(f"deployment {deployment_name!r}: {problem}")
    if ref.env is not None:
        raw = os.environ.get(ref.env)
        if not raw:
            raise CredentialProblem(
                f"deployment {deployment_name!r}: environment variable {ref.env} (its credential) is not set"
            )
        where = f"environment variable {ref.env}"
    else:
        path = credential_file(ref)  # credential_problem refused what it cannot resolve
        where = f"file {path}"
        try:
            raw = _read(path)
        except OSError as exc:
            raise CredentialProblem(
                f"deployment {deployment_name!r}: cannot read its credential file {path}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise CredentialProblem(f"deployment {deployment_name!r}: its credential file {path} {exc}") from None
    value = raw.strip(SURROUNDING)
    problem = value_problem(value)
    if problem:
        raise CredentialProblem(f"deployment {deployment_name!r}: the credential in {where} {problem}")
    return value
