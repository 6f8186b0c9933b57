"""SIEM forwarding: ECS records to a file, RFC 5424 syslog over TCP and an HTTP event collector.

The syslog receiver and the event collector are small real servers on loopback; the
records come from real signed uploads ingested by the collector.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from onbox.collector import Enrolment, Store, UploadRejected, ingest
from onbox.collector.siem import FileSink, Forwarder, HecSink, SyslogSink
from tests.support.collector import free_port
from tests.unit.test_collector_ingest import Workstation


def later() -> datetime:
    """Past the forwarder's lag, from now (not from import: a slow suite outlives that)."""
    return datetime.now(UTC) + timedelta(minutes=5)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Store, Workstation, Workstation]]:
    store = Store(f"sqlite:///{tmp_path / 'collector.db'}")
    known, stranger = Workstation(tmp_path / "known"), Workstation(tmp_path / "stranger")
    known.egress(4)
    stranger.egress(1)
    ingest(store, known.upload(), Enrolment([known.device]))
    with pytest.raises(UploadRejected):
        ingest(store, stranger.upload(), Enrolment([known.device]))
    yield store, known, stranger
    store.close()


def test_file_sink_gets_each_record_once_in_ecs(
    fleet: tuple[Store, Workstation, Workstation], tmp_path: Path
) -> None:
    store, known, stranger = fleet
    out = tmp_path / "siem.jsonl"
    forwarder = Forwarder(store, [FileSink(out)])
    assert forwarder.forward_once() == 1  # the alert; egress waits out the lag
    assert forwarder.forward_once(now=later()) == 4
    assert forwarder.forward_once(now=later()) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    alert, egress = records[0], records[1:]
    assert alert["event"]["kind"] == "alert" and alert["event"]["action"] == "onbox-unknown-device"
    assert alert["host"]["id"] == stranger.device
    assert [e["onbox"]["seq"] for e in egress] == sorted(e["onbox"]["seq"] for e in egress)
    for record in egress:
        assert record["event"]["action"] == "onbox-egress" and record["host"]["id"] == known.device
        assert record["user"] == {"name": "ann", "email": "ann@acme.test"}
        assert record["onbox"]["actor"]["host"] == "ws1" and record["onbox"]["label"] == "public"
    known.egress(2)
    ingest(store, known.upload(after=egress[-1]["onbox"]["seq"]), Enrolment([known.device]))
    assert forwarder.forward_once(now=later() + timedelta(minutes=5)) == 2


class _Syslog(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", port))
        self.data = b""

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while chunk := conn.recv(65536):
                    self.data += chunk

    def frames(self) -> list[bytes]:
        found, rest = [], self.data
        while rest:
            size, _, rest = rest.partition(b" ")
            found.append(rest[: int(size)])
            rest = rest[int(size) :]
        return found


def test_syslog_sink_delivers_after_the_receiver_comes_back(
    fleet: tuple[Store, Workstation, Workstation],
) -> None:
    store, known, _ = fleet
    port = free_port()
    forwarder = Forwarder(store, [SyslogSink("127.0.0.1", port, hostname="collector1")])
    assert forwarder.forward_once(now=later()) == 0  # nobody listens: nothing lost, retried
    receiver = _Syslog(port)
    receiver.start()
    assert forwarder.forward_once(now=later()) == 5
    receiver.sock.close()
    receiver.join(5)
    frames = receiver.frames()
    assert len(frames) == 5
    assert frames[0].startswith(b"<108>1 ")  # facility 13 (log audit), severity 4: an alert
    assert all(f.startswith(b"<110>1 ") for f in frames[1:])  # severity 6: egress events
    header, _, payload = frames[1].partition(b" - onbox-egress - ")
    assert header.endswith(b" collector1 onbox-collector")
    assert json.loads(payload)["host"]["id"] == known.device


def test_hec_sink_posts_with_the_token(fleet: tuple[Store, Workstation, Workstation]) -> None:
    store, known, _ = fleet
    received: list[tuple[str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers.get("Authorization"), body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"text":"Success","code":0}')

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/collector/event"
        forwarder = Forwarder(store, [HecSink(url, "t0ken")])
        assert forwarder.forward_once(now=later()) == 5
    finally:
        server.shutdown()
        server.server_close()
    assert {auth for auth, _ in received} == {"Splunk t0ken"}
    events = [json.loads(part) for _, body in received for part in _split(body)]
    assert len(events) == 5 and {e["source"] for e in events} == {"onbox-collector"}
    egress = [e for e in events if e["event"]["event"]["kind"] == "event"]
    assert {e["host"] for e in egress} == {known.device}


def _split(body: bytes) -> Iterator[str]:
    decoder, text, at = json.JSONDecoder(), body.decode(), 0
    while at < len(text):
        _, end = decoder.raw_decode(text, at)
        yield text[at:end]
        at = end


def test_serve_refuses_bad_siem_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from onbox.server.cli import main

    monkeypatch.delenv("ONBOX_SIEM_HEC_TOKEN", raising=False)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["collector", "serve", "--db", db, "--siem-syslog", "nohostport"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert main(["collector", "serve", "--db", db, "--siem-hec", "https://hec.test/"]) == 2
    assert "ONBOX_SIEM_HEC_TOKEN" in capsys.readouterr().err
    assert main(["collector", "serve", "--db", db, "--tls-cert", "c.pem"]) == 2
