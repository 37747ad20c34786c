"""Helpers the tests share, one copy of each: a free port, the command line as a subprocess, the exporter
as a process, /metrics parsed into samples, waiting for something to happen, a scraping client, systemd's
notify socket and TLS files. Fixtures stay in conftest.py; this is plain Python (no pytest), so
tests/soak.py uses it outside pytest too."""

from __future__ import annotations

import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nothing listens on now: each test's exporter gets its own, so tests never
    wait for each other's ports (another process may take it meanwhile, which no test has seen happen)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int, field: str, default: int | None = None) -> int:
    """A number of /proc/PID/status (VmRSS: KiB), or `default` where the process has none (a zombie has
    no VmRSS); without a default, a missing field fails the test."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    if default is None:
        raise AssertionError(f"no {field} for {pid}")
    return default


# ---- the parser's fuzzers: captures bent out of shape ----


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """`data` with 1 to 8 random edits: a byte set, a bit flipped, a byte inserted or deleted, the end cut,
    or the end of one of `others` spliced on. The parser's fuzzers (test_parser.py, fuzz_parser.py) bend
    real captures with it, which reaches deeper into the decoders than random bytes do."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 2:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op == 3 and buf:
            del buf[rng.randrange(len(buf))]
        elif op == 4 or not others:
            buf = buf[: rng.randint(0, len(buf))]
        else:
            other = rng.choice(others)
            cut = rng.randint(0, len(other))
            buf = buf[: rng.randint(0, len(buf))] + other[cut:]
    return bytes(buf)


# ---- waiting: processes and threads do things in their own time; a test polls, with a deadline ----


def wait_until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.1,
    process: subprocess.Popen[Any] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Call `check` every `interval` s until it returns something true, and return that. Fails naming
    `what` after `timeout` s, with `details()` (a log's end, a screen), or as soon as `process` (the one
    that should make it happen) has exited, with its stderr."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read() if process.stderr is not None else ""
            raise AssertionError(f"the process exited with {process.returncode} before {what}: {stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:g} s" + (f"\n{details()}" if details else ""))
        time.sleep(interval)


# ---- /metrics: the text format parsed into samples ----

Labels = tuple[tuple[str, str], ...]


def labelled_samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a text exposition: {(name, its labels sorted): value}, parsed by
    prometheus_client's own parser, so what a test reads is what Prometheus would."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def samples(text: str) -> dict[tuple[str, str], float]:
    """{(name, its device or reason label, or ""): value}: the one label the exporter's series vary by,
    which is how the process tests name what they check."""
    return {
        (name, dict(labels).get("device", dict(labels).get("reason", ""))): value
        for (name, labels), value in labelled_samples(text).items()
    }


# ---- the command line as a subprocess ----

CLI = (sys.executable, "-m", "ble_exporter")  # from this checkout, with the tests' interpreter


def run_cli(
    *args: str,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    stdin: int | None = None,
    errors: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """`ble-exporter ARGS` run to its end, stdout and stderr captured as text; `prefix` runs it under
    another command (setpriv, unshare). A failing status does not raise: the tests assert on it."""
    return subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        text=True,
        errors=errors,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=stdin,
        check=False,
    )


def start_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    stdin: int | None = None,
    stdout: int | None = subprocess.PIPE,
    python: str = sys.executable,
) -> subprocess.Popen[str]:
    """`ble-exporter ARGS` started and left running (the caller stops it); stderr is piped, to be read
    once it has exited (a running process's pipe would block the reader)."""
    return subprocess.Popen(
        [python, "-m", "ble_exporter", *args],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
    )


# ---- the exporter as a process: `ble-exporter run` on a free loopback port ----


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

    def samples(self) -> dict[tuple[str, str], float]:
        """Its /metrics now, as `samples` reads it."""
        return samples(self.get("/metrics")[1])

    def stderr(self) -> str:
        """Its stderr once it has exited; while it runs (reading would block), its log: the start and
        the end, since a wait that fails late may have gone wrong early."""
        assert self.process.stderr is not None
        if self.process.poll() is None:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            if len(log) > 4500:
                log = f"{log[:1500]}\n[...]\n{log[-3000:]}"
            return f"(still running) log: {log}"
        return self.process.stderr.read()

    def wait_until(self, what: str, check: Callable[[], T], timeout: float = 20, interval: float = 0.1) -> T:
        """`wait_until` on this exporter: failing at once if it exits, and with its log's end if it runs on."""
        return wait_until(what, check, timeout, interval=interval, process=self.process, details=self.stderr)

    def healthy(self) -> bool:
        try:
            return self.get("/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 15.0) -> None:
        self.wait_until("an answer on /healthz", self.healthy, timeout, interval=0.05)

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
    process = start_cli("run", "--config", str(config), *args, env=env)
    return Exporter(process, port, config, log_file)


ExporterFactory = Callable[..., Exporter]


# ---- a scraping client, running while a test does something else to the exporter ----


class Scraper(threading.Thread):
    """Prometheus as far as a test needs it: GET /metrics every `every` s until `done` is set, each answer
    recorded as (its status, or the repr of what went wrong, and the seconds it took). An answer whose
    body does not parse as the text format is a failed one (`check`); with `pid`, the peak RSS (KiB)
    of that process is sampled after each scrape."""

    def __init__(
        self,
        port: int,
        *,
        tls: TlsFiles | None = None,
        pid: int | None = None,
        every: float = 0.05,
        timeout: float = 2.0,
        done: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/metrics"
        self.context = ssl.create_default_context(cafile=str(tls.ca)) if tls else None
        self.pid, self.every, self.timeout = pid, every, timeout
        self.done = done or threading.Event()
        self.results: list[tuple[int | str, float]] = []
        self.max_rss = 0

    @property
    def statuses(self) -> list[int | str]:
        return [status for status, _ in self.results]

    def check(self, body: str) -> None:
        """Each answer's body; raising counts the answer as failed."""
        list(text_string_to_metric_families(body))

    def record(self, status: int | str, seconds: float) -> None:
        self.results.append((status, seconds))

    def run(self) -> None:
        while not self.done.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout, context=self.context) as response:
                    status: int | str = response.status
                    self.check(response.read().decode())
            except Exception as e:
                status = repr(e)
            self.record(status, time.monotonic() - began)
            if self.pid is not None:
                self.max_rss = max(self.max_rss, proc_status(self.pid, "VmRSS"))
            self.done.wait(self.every)


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


def client_hello() -> bytes:
    """The first bytes a TLS client sends (its ClientHello), as Python's ssl sends them."""
    import contextlib

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
