"""A throwaway PostgreSQL server for tests and the store bench: Debian's binaries
(``/usr/lib/postgresql/*/bin``), ``initdb`` into a temp directory, ``pg_ctl`` on a free loopback
port, removed on ``stop()``. As root (CI) the server runs as the ``postgres`` user, since initdb
refuses root. Nothing listens beyond 127.0.0.1 (no Unix socket either)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PgUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed (``make deps`` installs them)."""


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if not found:
        raise PgUnavailable("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
    return Path(found[-1]).parent


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


class PgServer:
    """One server; ``dsn(db)`` names a database on it (``create_db`` makes one)."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bindir = pg_bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hb-pg-"))  # last: nothing after it can fail
        self.data = self.root / "data"
        self.password = secrets.token_hex(16)
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        self._started = False

    def start(self) -> PgServer:
        """initdb and start; on any failure nothing is left behind (the error says why)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PgServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        pwfile.chmod(0o600)
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "bridge", "-A", "scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        # Loopback TCP only. Tests run with fsync off (their data is thrown away); the bench
        # asks for a durable server, fsync on as in production.
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
            "-c max_connections=50 -c shared_buffers=32MB"
        )
        if not self.durable:
            opts += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._started = True  # from here on, stop() stops it (pg_ctl may fail after starting it)
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w",
            "-t", "60", "start",
        )  # fmt: skip
        return self

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://bridge:{self.password}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str, *, synchronous_commit: str | None = None) -> str:
        """A new database; ``synchronous_commit``: its own setting (e.g. ``off``: a commit does
        not wait for the WAL flush, which a server crash may then lose)."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
            if synchronous_commit is not None:
                assert synchronous_commit in ("on", "off", "local", "remote_write")
                sql = f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}'
                conn.execute(sql.encode())
        return self.dsn(name)

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.root, timeout=120)


@contextlib.contextmanager
def running_pg(*, durable: bool = False) -> Iterator[PgServer]:
    server = PgServer(durable=durable)
    try:
        yield server.start()
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
