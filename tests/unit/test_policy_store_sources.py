"""Policy sources: directory drops, HTTPS (real TLS server, verified certificates), specs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from onbox.classification.sources import (
    DirectorySource,
    GitSource,
    HttpsSource,
    configured_sources,
    parse_source,
    pull,
)
from onbox.classification.trust import SourceError
from tests.unit.test_policy_store import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def test_directory_source_takes_the_newest_bundle_file(env: Env, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    source = DirectorySource(drop)
    assert source.fetch() is None
    for i, name in enumerate(["b.onbox-policy", "a.json", "c.txt", ".d.onbox-policy"]):
        (drop / name).write_bytes(env.bundle(i + 1))
        os.utime(drop / name, ns=(10**18 + i, 10**18 + i))
    fetched = source.fetch()
    assert fetched is not None and fetched.origin.endswith("a.json")
    key = source.watch_key()
    os.utime(drop / "b.onbox-policy", ns=(2 * 10**18, 2 * 10**18))
    assert source.watch_key() != key
    assert [r.serial for r in pull(env.store, [source])] == [1]


def test_directory_source_reads_at_most_one_byte_past_the_cap(tmp_path: Path) -> None:
    (tmp_path / "big.onbox-policy").write_bytes(b"x" * 5000)
    fetched = DirectorySource(tmp_path, max_bytes=100).fetch()
    assert fetched is not None and len(fetched.data) == 101


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made here."""
    now = dt.datetime.now(dt.UTC)

    def cert(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        assert isinstance(signer, ec.EllipticCurvePrivateKey)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Policy CA")])
    ca_cert = cert("Test Policy CA", ca_key, ca_name, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = cert("127.0.0.1", server_key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "srv.pem", tmp_path / "srv.key"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    cert_path.write_bytes(server_cert.public_bytes(pem))
    key_path.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes], Path]]:
    """A real HTTPS server on 127.0.0.1 serving ``files`` by path."""
    ca, cert, key = _tls_files(tmp_path)
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", files, ca
    server.shutdown()
    server.server_close()
    thread.join()


def test_https_source_with_a_trusted_certificate(
    env: Env, https_server: tuple[str, dict[str, bytes], Path]
) -> None:
    base, files, ca = https_server
    files["/acme.onbox-policy"] = env.bundle(1)
    trusted = ssl.create_default_context(cafile=str(ca))
    source = HttpsSource(f"{base}/acme.onbox-policy", verify=trusted)
    (result,) = pull(env.store, [source])
    assert result.applied and env.store.current().id == "acme-1"
    assert HttpsSource(f"{base}/missing", verify=trusted).fetch() is None


def test_https_source_refuses_an_untrusted_certificate(
    env: Env, https_server: tuple[str, dict[str, bytes], Path]
) -> None:
    base, files, _ca = https_server
    files["/acme.onbox-policy"] = env.bundle(1)
    (result,) = pull(env.store, [HttpsSource(f"{base}/acme.onbox-policy")])
    assert not result.applied and "CERTIFICATE_VERIFY_FAILED" in result.reason
    assert env.store.current().serial == 0


def test_https_source_caps_the_download(
    env: Env, https_server: tuple[str, dict[str, bytes], Path]
) -> None:
    base, files, ca = https_server
    files["/huge"] = b"{" + b" " * 300_000
    source = HttpsSource(
        f"{base}/huge", verify=ssl.create_default_context(cafile=str(ca)), max_bytes=1000
    )
    fetched = source.fetch()
    assert fetched is not None and len(fetched.data) == 1001


def test_source_specs(tmp_path: Path) -> None:
    assert isinstance(parse_source(str(tmp_path)), DirectorySource)
    assert isinstance(parse_source(f"dir:{tmp_path}"), DirectorySource)
    git_source = parse_source("git+https://git.example/acme/policy.git#prod:signed/p.onbox-policy")
    assert isinstance(git_source, GitSource)
    assert (git_source.url, git_source.branch, git_source.path) == (
        "https://git.example/acme/policy.git",
        "prod",
        "signed/p.onbox-policy",
    )
    assert isinstance(parse_source("https://policy.example/p"), HttpsSource)
    with pytest.raises(SourceError, match="plain http"):
        parse_source("http://policy.example/p")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[policy]\nsources = ["{tmp_path}", "git+/srv/policy.git"]\n')
    kinds = [type(s).__name__ for s in configured_sources(settings)]
    assert kinds == ["DirectorySource", "GitSource"]
    assert configured_sources(tmp_path / "absent.toml") == []
