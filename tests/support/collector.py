"""A real ``onbox collector serve`` subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CollectorProcess:
    """``onbox collector serve --db DB`` until :meth:`stop` or :meth:`kill`."""

    def __init__(
        self, db: str, root: Path, *extra: str, scheme: str = "http", ca: str | None = None
    ) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        verify = ssl.create_default_context(cadata=ca) if ca else True
        root.mkdir(parents=True, exist_ok=True)
        self._log_path = root / f"collector-{self.port}.log"
        self._log = open(self._log_path, "wb")  # closed in stop/kill
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onbox", "collector", "serve", "--db", db,
             "--port", str(self.port), *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ONBOX_DATA_DIR": str(root / "data")},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2, verify=verify).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"collector did not start: {self._log_path.read_text()}")
            time.sleep(0.1)  # polling a port: there is no notification to wait for

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """Terminate and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def running_collector(
    db: str, root: Path, *extra: str, scheme: str = "http", ca: str | None = None
) -> Iterator[CollectorProcess]:
    """A collector for the duration of the block."""
    collector = CollectorProcess(db, root, *extra, scheme=scheme, ca=ca)
    try:
        yield collector
    finally:
        collector.stop()
