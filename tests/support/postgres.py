"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a Unix socket, no TCP.

Found through ``pg_ctl`` on PATH or Debian's ``/usr/lib/postgresql/*/bin``. PostgreSQL
refuses to run as root, so under root the cluster runs as the ``postgres`` user
(``runuser``). :func:`postgres_cluster` yields a libpq connection string, or skips the
test with the reason when PostgreSQL is not installed (``scripts/test`` installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pg_bin() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``, or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _as_owner(argv: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def postgres_cluster() -> Iterator[str]:
    """Start a cluster, yield its connection string, stop and remove it."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/test does)")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="onbox-pg-", dir="/tmp"))
    data, sock = root / "data", root / "s"
    sock.mkdir()
    if user:
        shutil.chown(root, user)
        shutil.chown(sock, user)
    env = {**os.environ, "LC_ALL": "C"}
    try:
        subprocess.run(
            _as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "onbox",
                    "-E",
                    "UTF8",
                ],
                user,
            ),
            check=True,
            capture_output=True,
            env=env,
        )
        options = f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off"
        subprocess.run(
            _as_owner(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-w",
                    "-l",
                    str(root / "log"),
                    "start",
                ],
                user,
            ),
            check=True,
            capture_output=True,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL: {exc.stderr.decode(errors='replace')}")
    try:
        yield f"host={sock} dbname=postgres user=onbox"
    finally:
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user),
            capture_output=True,
            env=env,
        )
        shutil.rmtree(root, ignore_errors=True)


def reset(conninfo: str) -> None:
    """Drop every collector table, so each test starts from an empty database."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS entries, devices, device_keys, alerts, egress_rollup,"
            " tokens_rollup, siem_cursors, device_epochs"
        )


def restart(conninfo: str) -> None:
    """Restart the cluster behind ``conninfo`` (fast shutdown: sessions are cut)."""
    host = next(p.split("=", 1)[1] for p in conninfo.split() if p.startswith("host="))
    root = Path(host).parent
    bindir = pg_bin()
    assert bindir is not None
    user = "postgres" if os.geteuid() == 0 else None
    subprocess.run(
        _as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "log"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
            user,
        ),
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
    )
