"""Helpers the tests share, one copy of each: the exporter as a process on a free port, systemd's
notify socket and TLS files. Fixtures stay in conftest.py; this is plain Python (no pytest), so
tests/soak.py can use it outside pytest too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# ---- the exporter as a process: `ble-exporter run` on a free loopback port ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Exporter:
    """A running `ble-exporter run` subprocess (started by `start_exporter`)."""

    process: subprocess.Popen[str]
    port: int
    config: Path
    log_file: Path

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return int(response.status), response.read().decode()

    def stderr(self) -> str:
        """Its stderr once it has exited; while it runs (reading would block), the end of its log."""
        assert self.process.stderr is not None
        if self.process.poll() is None:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            return f"(still running) log: {log[-3000:]}"
        return self.process.stderr.read()

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited with {self.process.returncode}: {self.stderr()}")  # type: ignore[union-attr]
            try:
                if self.get("/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("exporter did not answer /healthz in time")

    def stop(self, timeout: float = 5.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def write_config(tmp_path: Path, body: str, port: int | None = None) -> tuple[Path, Path]:
    log_file = tmp_path / "logs" / "ble_exporter.log"
    config = tmp_path / "config.yaml"
    head = f"listen_port: {port or free_port()}\nlisten_address: 127.0.0.1\nlog_file: {log_file}\n"
    config.write_text(head + body)
    return config, log_file


def start_exporter(
    tmp_path: Path, body: str, *args: str, env: Mapping[str, str] | None = None, port: int | None = None
) -> Exporter:
    """Start `python -m ble_exporter run --config <tmp config> ARGS`; the caller stops it."""
    port = port or free_port()
    config, log_file = write_config(tmp_path, body, port)
    process = subprocess.Popen(
        [sys.executable, "-m", "ble_exporter", "run", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env if env is not None else os.environ),
        cwd=Path(__file__).resolve().parent.parent,
    )
    return Exporter(process, port, config, log_file)


ExporterFactory = Callable[..., Exporter]


# ---- systemd's end of the notify protocol ----


class Listener:
    """systemd's end: a datagram socket, its messages recorded with their arrival time by a thread."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="notify-", dir="/tmp")  # short: AF_UNIX paths are < 108
        self.path = str(Path(self._dir.name) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self.on_message: Callable[[str], None] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))
            if self.on_message is not None:
                self.on_message(data.decode())

    def times(self, message: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == message]

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()
        self._dir.cleanup()


# ---- TLS material for the web config tests: a CA, a server and a client certificate ----


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA that signs a server certificate for 127.0.0.1/localhost and a client certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    def key_usage(cert_sign: bool) -> x509.KeyUsage:
        # The extensions Python 3.13's default client context (VERIFY_X509_STRICT) requires, as real CAs set them.
        return x509.KeyUsage(
            digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("ble-exporter test CA"))
        .issuer_name(name("ble-exporter test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(key_usage(cert_sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), key

    files = TlsFiles(*(directory / n for n in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem")))
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert, key = issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, server_sans)
    files.cert.write_bytes(cert)
    write_key(files.key, key)
    cert, key = issue("prometheus", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("prometheus")])
    files.client_cert.write_bytes(cert)
    write_key(files.client_key, key)
    return files
