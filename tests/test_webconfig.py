"""The exporter-toolkit web configuration: each field, each error as `file:line: problem; fix`."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import bcrypt
import pytest
from support import TlsFiles, run_cli

from ble_exporter.config import ConfigError
from ble_exporter.webconfig import load_web_config

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()  # cost 4: the tests check many


def web(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = web(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_web_config(str(path))
    assert all(p.startswith(f"{path}:") and "\n" not in p for p in info.value.problems), info.value.problems
    return [p.removeprefix(f"{path}:") for p in info.value.problems]


def tls_text(files: TlsFiles, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {files.cert}\n  key_file: {files.key}\n{extra}"


def test_tls_and_users_with_the_toolkit_defaults(tmp_path: Path, tls_files: TlsFiles) -> None:
    config = load_web_config(str(web(tmp_path, tls_text(tls_files) + f"basic_auth_users:\n  prometheus: {HASH}\n")))
    assert config.tls is not None and config.users == {"prometheus": HASH.encode()}
    assert config.tls.minimum_version == ssl.TLSVersion.TLSv1_2 and config.tls.maximum_version == ssl.TLSVersion.TLSv1_3
    assert config.tls.verify_mode == ssl.CERT_NONE  # NoClientCert
    assert config.key_file == str(tls_files.key)


@pytest.mark.parametrize(
    ("auth", "mode"),
    [("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL), ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED)],
)
def test_client_certificates(tmp_path: Path, tls_files: TlsFiles, auth: str, mode: ssl.VerifyMode) -> None:
    extra = f"  client_auth_type: {auth}\n  client_ca_file: {tls_files.ca}\n  min_version: TLS13\n"
    config = load_web_config(str(web(tmp_path, tls_text(tls_files, extra))))
    assert config.tls is not None and config.tls.verify_mode == mode
    assert config.tls.minimum_version == ssl.TLSVersion.TLSv1_3


def test_users_only_and_an_empty_file(tmp_path: Path) -> None:
    assert load_web_config(str(web(tmp_path, f"basic_auth_users:\n  a: {HASH}\n"))).tls is None
    assert load_web_config(str(web(tmp_path, "# nothing yet\n"))).users == {}


def test_every_problem_is_a_line_with_its_fix(tmp_path: Path, tls_files: TlsFiles) -> None:
    found = problems(
        tmp_path,
        "http_server_config:\n  http2: true\n"  # 1
        "tls_server_config:\n"  # 3
        f"  cert_file: {tls_files.cert}\n"
        "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"  # 5
        "  client_auth_type: RequestClientCert\n"  # 6
        "  min_version: TLS9\n"  # 7
        "basic_auth_users:\n"
        "  alice: hunter2\n"  # 9
        "  bob: [x]\n"  # 10
        "rate_limit: {interval: 1s}\n"  # 11
        "frobnicate: 1\n",  # 12
    )
    assert [int(p.split(":")[0]) for p in found] == sorted(int(p.split(":")[0]) for p in found)
    text = "\n".join(found)
    assert "1: `http_server_config` is not supported by ble-exporter (HTTP/2 and extra headers are not offered)" in text
    assert "4: tls_server_config needs `key_file`; give the path of the PEM file" in text
    assert "5: tls_server_config: `cipher_suites` is not supported" in text
    assert "6: tls_server_config: client_auth_type `RequestClientCert` accepts unverified certificates" in text
    assert "7: tls_server_config: min_version `TLS9` is not one of TLS10, TLS11, TLS12, TLS13" in text
    assert "9: basic_auth_users: the password of `alice` is not a bcrypt hash; make one with `htpasswd -nBC 10" in text
    assert "hunter2" not in text  # a password typed where its hash belongs is not repeated
    assert "10: basic_auth_users: the password of `bob` is not a bcrypt hash" in text
    assert "11: `rate_limit` is not supported" in text
    assert "12: unknown key `frobnicate`; a web config takes tls_server_config and basic_auth_users" in text


def test_files_that_cannot_be_used(tmp_path: Path, tls_files: TlsFiles) -> None:
    missing = tmp_path / "nope.pem"
    found = problems(tmp_path, f"tls_server_config:\n  cert_file: {missing}\n  key_file: relative.pem\n")
    assert found == [
        f"2: {missing} does not exist; create it (README: Securing the endpoints) or fix the path",
        "3: relative.pem is a relative path; give the absolute path",
    ]
    # A key that is not the certificate's.
    other = tmp_path / "other-key.pem"
    other.write_bytes(tls_files.client_key.read_bytes())
    (mismatch,) = problems(tmp_path, f"tls_server_config:\n  cert_file: {tls_files.cert}\n  key_file: {other}\n")
    assert mismatch.startswith(f"3: {tls_files.cert} and {other} are not a certificate and its key in PEM (")
    assert "check that key_file is the key of cert_file" in mismatch
    (needs_ca,) = problems(tmp_path, tls_text(tls_files, "  client_auth_type: RequireAndVerifyClientCert\n"))
    expected = "4: tls_server_config: client_auth_type RequireAndVerifyClientCert needs client_ca_file"
    assert needs_ca == expected + ", the CA that signs the clients"


def test_an_unreadable_key(tmp_path: Path, tls_files: TlsFiles) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(tls_files.key.read_bytes())
    key.chmod(0)
    config = web(tmp_path, f"tls_server_config:\n  cert_file: {tls_files.cert}\n  key_file: {key}\n")
    # root reads any file: as root, the check runs without the capabilities that let it (CAP_DAC_*).
    caps = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"] if os.geteuid() == 0 else []
    main_config = tmp_path / "c.yaml"
    main_config.write_text(f"web_config_file: {config}\nlog_file: {tmp_path}/x.log\n")
    result = run_cli("check-config", "--config", str(main_config), prefix=prefix)
    assert result.returncode == 2, result
    assert result.stderr == (
        f"ble-exporter: error: {config}:3: {key} cannot be read (permission denied); let the service's group read it: "
        "chgrp ble-exporter, chmod 640\n"
    )
