"""A real ``onbox collector serve`` on loopback, fed by ``onbox journal ship --now``.

The collector runs as a subprocess on SQLite; workstations are real journals written
through ``onbox.audit.open_journal``; shipping goes over HTTP. The one fake here is an
httpx transport that drops the connection after N uploads, to cut a shipment short.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onbox.audit import open_journal
from onbox.audit.errors import CollectorUnreachable
from onbox.audit.ship import load_state, ship
from onbox.server.cli import main
from tests.support.policies import PolicyBuilder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(base URL, database URL)`` of a running collector."""
    root = tmp_path_factory.mktemp("collector")
    db = f"sqlite:///{root / 'collector.db'}"
    port = _free_port()
    log = open(root / "log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "onbox", "collector", "serve", "--db", db, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ONBOX_DATA_DIR": str(root / "data")},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail(f"collector did not start: {(root / 'log').read_text()}")
        time.sleep(0.1)  # polling a port that is not a notification channel
    yield url, db
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture
def workstation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONBOX_JOURNAL_DIR", str(tmp_path / "journal"))
    return tmp_path


def _write(count: int, **fields: Any) -> str:
    with open_journal() as journal:
        for i in range(count):
            body = {"destination": "cloud", "kind": "openai", "label": "public", "n": i}
            body.update(fields)
            journal.append("egress", body, durable=True)
        return str(journal.device_fingerprint)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """Exit code and output; human output is unwrapped (rich wraps at the terminal width)."""
    code = main(argv)
    out = capsys.readouterr()
    if "--json" in argv:
        return code, out.out + out.err
    return code, " ".join((out.out + out.err).split())


def _enrol(db: str, device: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, ["collector", "enrol", "--db", db, device])
    assert code == 0 and "enrolled" in out


def test_ship_now_uploads_then_sends_heartbeats(
    collector: tuple[str, str], workstation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = collector
    device = _write(25)
    code, out = _run(capsys, ["journal", "ship", "--now", "--collector", url])
    assert code == 1 and f"onbox collector enrol {device}" in out  # not enrolled yet
    _enrol(db, device, capsys)
    code, out = _run(
        capsys, ["journal", "ship", "--now", "--json", "--collector", url, "--batch", "10"]
    )
    report = json.loads(out)
    assert code == 0 and report["uploads"] == 3 and report["stored"] == report["sent"]
    state = load_state(workstation / "data" / "ship-state.json")
    assert state["acked_seq"] == report["acked_seq"] and state["device"] == device
    code, out = _run(capsys, ["journal", "ship", "--now", "--json", "--collector", url])
    again = json.loads(out)
    assert code == 0 and (again["uploads"], again["sent"]) == (1, 0)  # a heartbeat
    code, out = _run(
        capsys,
        [
            "collector",
            "query",
            "--db",
            db,
            "--device",
            device,
            "--kind",
            "egress",
            "--json",
            "--limit",
            "100",
        ],
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 25 and {r["destination"] for r in rows} == {"cloud"}
    found = httpx.get(url + "/v1/entries", params={"device": device, "kind": "egress", "limit": 5})
    assert found.status_code == 200 and len(found.json()) == 5


def test_shipping_resumes_after_a_cut_and_drains_after_being_offline(
    collector: tuple[str, str], workstation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = collector
    device = _write(30)
    _enrol(db, device, capsys)
    state_path = workstation / "data" / "ship-state.json"

    class CutAfter(httpx.HTTPTransport):
        """Forwards ``allowed`` requests to the real collector, then drops the link."""

        def __init__(self, allowed: int) -> None:
            super().__init__()
            self.allowed = allowed

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.allowed <= 0:
                raise httpx.ConnectError("link dropped", request=request)
            self.allowed -= 1
            return super().handle_request(request)

    with open_journal() as journal, httpx.Client(transport=CutAfter(1)) as client:
        with pytest.raises(CollectorUnreachable, match="stay queued"):
            ship(journal, url, state_path, batch_entries=10, client=client)
    assert load_state(state_path)["acked_seq"] == 9
    # offline for a while: nothing listens there; the queue (the journal) keeps growing
    dead = f"http://127.0.0.1:{_free_port()}"
    code, out = _run(capsys, ["journal", "ship", "--now", "--collector", dead])
    assert code == 3 and "stay queued" in out
    _write(20)
    code, out = _run(capsys, ["journal", "ship", "--now", "--json", "--collector", url])
    report = json.loads(out)
    assert code == 0 and report["acked_seq"] == load_state(state_path)["acked_seq"]
    devices = {d["device"]: d for d in httpx.get(url + "/v1/devices").json()}
    assert devices[device]["chain"] == "ok"
    assert devices[device]["entries"] == devices[device]["head_seq"] + 1 == report["acked_seq"] + 1


def test_http_refusals(collector: tuple[str, str], workstation: Path) -> None:
    url, _ = collector
    big = httpx.post(url + "/v1/upload", content=b"x" * (17 * 1024 * 1024))
    assert big.status_code == 413 and "smaller batches" in big.json()["error"]
    bad = httpx.post(url + "/v1/upload", content=b'{"type": "onbox-journal-upload", "v": 1, "ent')
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    assert httpx.get(url + "/v1/entries", params={"since": "yesterday"}).status_code == 400


def test_dashboard_shows_devices_alerts_and_egress(
    collector: tuple[str, str], workstation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = collector
    device = _write(4, label="internal", destination="corp-vllm", tokensIn=5)
    _enrol(db, device, capsys)
    assert main(["journal", "ship", "--now", "--collector", url]) == 0
    stranger = workstation / "stranger"
    with open_journal(stranger / "journal", device_key_dir=stranger / "keys") as journal:
        journal.append("egress", {"destination": "cloud", "label": "public"}, durable=True)
        unknown = str(journal.device_fingerprint)
    assert (
        main(["journal", "ship", "--now", "--dir", str(stranger / "journal"), "--collector", url])
        == 2  # another device's journal: shipping must run on that device
    )
    capsys.readouterr()
    from onbox.audit.ship import ship as ship_journal

    with open_journal(stranger / "journal", device_key_dir=stranger / "keys") as journal:
        with pytest.raises(Exception, match="not enrolled"):
            ship_journal(journal, url, stranger / "state.json")
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert device in html and unknown in html and "unknown-device" in html
    assert "corp-vllm" in html and "internal" in html
    alerts = httpx.get(url + "/v1/alerts").json()
    assert any(a["kind"] == "unknown-device" and a["device"] == unknown for a in alerts)
    egress = httpx.get(url + "/v1/egress").json()
    assert {"label": "internal", "destination": "corp-vllm", "requests": 4, "bytes": 0} in egress[
        "by_label_destination"
    ]


def test_shipping_follows_key_rotations_between_shipments(
    collector: tuple[str, str], workstation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = collector
    device = _write(5)
    _enrol(db, device, capsys)
    state_path = workstation / "data" / "ship-state.json"
    assert main(["journal", "ship", "--now", "--collector", url]) == 0
    history = load_state(state_path)["key_history"]
    assert len(history) == 1  # the first header only
    for _ in range(2):
        with open_journal() as journal:
            journal.rotate_key("test")
        _write(3)
        assert main(["journal", "ship", "--now", "--collector", url]) == 0
    capsys.readouterr()
    state = load_state(state_path)
    assert len(state["key_history"]) == 3  # found by scanning only what was new
    devices = {d["device"]: d for d in httpx.get(url + "/v1/devices").json()}
    assert devices[device]["chain"] == "ok"
    assert devices[device]["entries"] == state["acked_seq"] + 1


def _shipping_policy(url: str, minutes: float) -> str:
    """A restricted-by-default policy whose ``[audit]`` ships to ``url`` every ``minutes``."""
    audit = f'[audit]\ncollector_url = "{url}"\nship_minutes = {minutes}\n'
    return PolicyBuilder("ship-test", extra=audit).toml()


def test_policy_collector_url_is_validated(tmp_path: Path) -> None:
    from onbox.classification.policy import load_policy
    from onbox.classification.policy_model import PolicyError

    path = tmp_path / "policy.toml"
    path.write_text(_shipping_policy("https://collector.corp.test", 2))
    policy = load_policy(path)
    assert (policy.collector_url, policy.ship_minutes) == ("https://collector.corp.test", 2.0)
    path.write_text(_shipping_policy("http://collector.corp.test", 2))
    with pytest.raises(PolicyError, match="https"):
        load_policy(path)
    path.write_text(_shipping_policy("https://collector.corp.test", 0))
    with pytest.raises(PolicyError, match="positive"):
        load_policy(path)


def test_onbox_serve_wiring_ships_to_the_collector_its_policy_names(
    collector: tuple[str, str],
    workstation: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    url, db = collector
    monkeypatch.setenv("ONBOX_TRUST_ROOT", str(workstation / "no-trust-root.json"))
    device = _write(2)
    _enrol(db, device, capsys)
    policy = workstation / "policy.toml"
    policy.write_text(_shipping_policy(url, 0.01))
    settings = Settings()
    settings.policy.path = str(policy)
    wiring = Wiring(settings)
    try:
        wiring.start()
        deadline = time.monotonic() + 60
        while True:  # the shipper runs on its own timer; poll the collector's search
            found = httpx.get(
                url + "/v1/entries", params={"device": device, "kind": "server-start"}
            ).json()
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert found and found[0]["os_user"], found
    finally:
        wiring.stop()
    state = load_state(workstation / "data" / "ship-state.json")
    assert state["collector"] == url and state["acked_seq"] >= found[0]["seq"]


async def test_reading_needs_the_read_token_when_one_is_set(tmp_path: Path) -> None:
    import base64

    from onbox.collector import Enrolment, Store
    from onbox.collector.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    app = create_app(store, Enrolment(), read_token="s3cret")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            for path in ("/", "/v1/entries", "/v1/devices", "/v1/alerts", "/v1/egress"):
                refused = await client.get(path)
                assert refused.status_code == 401, path
                assert refused.headers["www-authenticate"].startswith("Basic")
                wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                right = await client.get(path, headers={"Authorization": "Bearer s3cret"})
                assert right.status_code == 200, path
            basic = base64.b64encode(b"security:s3cret").decode()
            page = await client.get("/", headers={"Authorization": f"Basic {basic}"})
            assert page.status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            # uploads authenticate themselves; the token is not asked for
            assert (await client.post("/v1/upload", content=b"{}")).status_code == 400
    finally:
        store.close()


def test_shipper_ships_when_a_segment_is_sealed(
    collector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from onbox.audit.ship import Shipper

    url, db = collector
    now = [datetime(2026, 11, 20, 12, tzinfo=UTC)]
    journal = open_journal(tmp_path / "j", device_key_dir=tmp_path / "k", clock=lambda: now[0])
    device = str(journal.device_fingerprint)
    _enrol(db, device, capsys)
    shipper = Shipper(
        journal, lambda: (url, 60.0, None), tmp_path / "state.json", poll_seconds=0.05
    )
    try:
        shipper.start()  # ships at start, then not again for an hour...
        deadline = time.monotonic() + 60
        while shipper.shipments < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        now[0] += timedelta(days=1)  # ...unless a segment is sealed: a new day starts one
        seq = journal.append("egress", {"destination": "cloud", "label": "public"}).seq
        while time.monotonic() < deadline:
            found = httpx.get(url + "/v1/entries", params={"device": device, "kind": "egress"})
            if found.json():
                break
            time.sleep(0.05)
        assert [e["seq"] for e in found.json()] == [seq]
        assert shipper.shipments == 2 and shipper.last_error is None
    finally:
        shipper.stop()
        journal.close()


def _tls_files(directory: Path) -> tuple[str, Path, Path]:
    """A CA (PEM) and a certificate for 127.0.0.1 it signed, with its key: (ca, cert, key)."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("onbox test CA")).issuer_name(name("onbox test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(name("collector")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_path, key_path


def test_shipping_over_tls_trusts_the_policy_ca_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onbox.audit.ship import Shipper
    from onbox.classification.policy import load_policy
    from onbox.classification.policy_model import PolicyError
    from tests.support.collector import running_collector

    ca, cert, key = _tls_files(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        _shipping_policy("https://collector.corp.test", 5) + f'collector_ca = """{ca}"""\n'
    )
    assert load_policy(policy).collector_ca == ca
    policy.write_text(policy.read_text().replace("BEGIN CERTIFICATE", "BEGIN NONSENSE"))
    with pytest.raises(PolicyError, match="collector_ca"):
        load_policy(policy)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    tls = ("--trust-on-first-use", "--tls-cert", str(cert), "--tls-key", str(key))
    with running_collector(db, tmp_path / "c", *tls, scheme="https", ca=ca) as collector:
        journal = open_journal(tmp_path / "j", device_key_dir=tmp_path / "k")
        journal.append("egress", {"destination": "cloud", "label": "public"})
        errors = []
        try:
            for trust in (None, ca):  # the system trust store does not know this CA
                shipper = Shipper(
                    journal, lambda t=trust: (collector.url, 60.0, t), tmp_path / "s.json"
                )
                shipper.start()
                deadline = time.monotonic() + 60
                while shipper.shipments < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                shipper.stop()
                errors.append(shipper.last_error)
        finally:
            journal.close()
    assert errors[0] is not None and "CERTIFICATE_VERIFY_FAILED" in errors[0]
    assert errors[1] is None


def test_shipper_keeps_one_client_but_follows_a_ca_change_at_once(tmp_path: Path) -> None:
    from onbox.audit.ship import Shipper
    from tests.support.collector import running_collector

    ca, cert, key = _tls_files(tmp_path)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    tls = ("--trust-on-first-use", "--tls-cert", str(cert), "--tls-key", str(key))
    with running_collector(db, tmp_path / "c", *tls, scheme="https", ca=ca) as collector:
        journal = open_journal(tmp_path / "j", device_key_dir=tmp_path / "k")
        trust: list[str | None] = [ca]
        shipper = Shipper(
            journal,
            lambda: (collector.url, 0.001, trust[0]),
            tmp_path / "s.json",
            poll_seconds=0.05,
        )
        try:
            shipper.start()
            deadline = time.monotonic() + 60
            while shipper.shipments < 5 and time.monotonic() < deadline:
                time.sleep(0.05)  # the shipper's own timer: no notification to wait for
            assert shipper.shipments >= 5 and shipper.last_error is None
            # the policy drops its CA: the next shipment must not ride the connection the
            # old CA vouched for
            trust[0] = None
            seen = shipper.shipments
            while shipper.shipments < seen + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert shipper.last_error is not None
            assert "CERTIFICATE_VERIFY_FAILED" in shipper.last_error
        finally:
            shipper.stop()
            journal.close()
