"""A throwaway PostgreSQL server for the test session, started from Debian's binaries.

Runs as the ``postgres`` system user when the suite runs as root (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from helpers import free_port


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresServer:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found: run scripts/install-test-services.sh")
        self.base = Path(tempfile.mkdtemp(prefix="gatehouse-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self._prefix: list[str] = []
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        self._run(str(bindir / "initdb"), "-D", str(self.data), "-U", "gatehouse", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._options = options
        self._pg_ctl = str(bindir / "pg_ctl")
        self.resume()

    def pause(self) -> None:
        """Stop the server, keeping its data: an outage, as clients see one."""
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.data), "-o", self._options, "-l", str(self.base / "log"), "-w", "start")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True, timeout=120)

    @property
    def admin_url(self) -> str:
        return f"postgresql://gatehouse@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://gatehouse@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
