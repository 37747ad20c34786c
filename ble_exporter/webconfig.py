"""The web configuration file of the Prometheus exporter-toolkit (`--web.config.file` of node_exporter
and the other official exporters): TLS and basic auth for the HTTP endpoints.

Supported, with the toolkit's meaning and defaults: `tls_server_config` (`cert_file`, `key_file`,
`client_auth_type`, `client_ca_file`, `min_version`, `max_version`) and `basic_auth_users` (user name ->
bcrypt hash). Anything else is a one-line error naming the key. Problems are `file:line: problem; fix`,
as in the main config; TLS goes through Python's ssl and the hashes through bcrypt.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ble_exporter.config import ConfigError, read_text, yaml_root

# bcrypt as htpasswd -B and the toolkit's docs make it: $2y$ (or $2a$/$2b$), a cost, 22+31 characters.
_BCRYPT = re.compile(r"^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}$")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The toolkit's client_auth_type, as Python's ssl can do it. RequestClientCert and RequireAnyClientCert
# accept a certificate without checking it: Python's ssl always checks one it asks for.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
# The toolkit's other keys: named in the error, so that a file written for node_exporter gets a clear one.
UNSUPPORTED = {
    "http_server_config": "HTTP/2 and extra headers are not offered",
    "rate_limit": "the exporter bounds its clients itself (README: Faults)",
    "cert": "give the certificate as cert_file",
    "key": "give the key as key_file",
    "client_ca": "give the CA as client_ca_file",
    "client_allowed_sans": "not offered",
    "cipher_suites": "Python's ssl defaults are used",
    "prefer_server_cipher_suites": "Python's ssl defaults are used",
    "curve_preferences": "Python's ssl defaults are used",
}


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user name -> bcrypt hash
    key_file: str | None = None  # for the permission warning


def load_web_config(path: str) -> WebConfig:
    """Read and check a web configuration file; raises ConfigError (every problem, in line order)."""
    text = read_text(path, missing="create it (README: Securing the endpoints) or change web_config_file")
    root = yaml_root(text, path)
    problems: list[tuple[int, str]] = []

    def fail(node: yaml.Node, message: str) -> None:
        problems.append((node.start_mark.line + 1, message))

    if root is None:
        return WebConfig(path)
    if not isinstance(root, yaml.MappingNode):
        fail(root, "the file must be a mapping with tls_server_config and basic_auth_users (see the README)")
        raise ConfigError([f"{path}:{line}: {m}" for line, m in problems])
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = {}
    key_file = None
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
        if key == "tls_server_config":
            tls, key_file = _tls(value_node, fail)
        elif key == "basic_auth_users":
            users = _users(value_node, fail)
        elif key in UNSUPPORTED:
            fail(key_node, f"`{key}` is not supported by ble-exporter ({UNSUPPORTED[key]}); remove it")
        else:
            fail(key_node, f"unknown key `{key}`; a web config takes tls_server_config and basic_auth_users")
    if problems:
        raise ConfigError([f"{path}:{line}: {m}" for line, m in sorted(problems)])
    return WebConfig(path, tls, users, key_file)


def _scalar(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null" else None


Fail = Callable[[yaml.Node, str], None]


def _tls(node: yaml.Node, fail: Fail) -> tuple[ssl.SSLContext | None, str | None]:
    if not isinstance(node, yaml.MappingNode):
        fail(node, "tls_server_config must be a mapping with cert_file and key_file")
        return None, None
    given: dict[str, tuple[yaml.Node, str]] = {}
    for k, v in node.value:
        name = k.value if isinstance(k, yaml.ScalarNode) else "?"
        if name in UNSUPPORTED:
            fail(k, f"tls_server_config: `{name}` is not supported by ble-exporter ({UNSUPPORTED[name]}); remove it")
        elif name not in TLS_KEYS:
            fail(k, f"tls_server_config: unknown key `{name}`; it takes {', '.join(TLS_KEYS)}")
        elif (value := _scalar(v)) is None:
            fail(v, f"tls_server_config: `{name}` must be a single value")
        else:
            given[name] = (v, value)
    for required in ("cert_file", "key_file"):
        if required not in given:
            fail(node, f"tls_server_config needs `{required}`; give the path of the PEM file")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        at, value = given.get(name, (node, default))
        if value not in TLS_VERSIONS:
            fail(at, f"tls_server_config: {name} `{value}` is not one of {', '.join(TLS_VERSIONS)}")
        versions[name] = TLS_VERSIONS.get(value, TLS_VERSIONS[default])
    if versions["min_version"] > versions["max_version"]:
        fail(given["min_version"][0], "tls_server_config: min_version is above max_version")
    at, auth = given.get("client_auth_type", (node, "NoClientCert"))
    if auth in UNVERIFIED_CLIENT_AUTH:
        fail(
            at,
            f"tls_server_config: client_auth_type `{auth}` accepts unverified certificates, which Python's ssl "
            "cannot; use RequireAndVerifyClientCert (with client_ca_file)",
        )
    elif auth not in CLIENT_AUTH:
        fail(at, f"tls_server_config: client_auth_type `{auth}` is not one of {', '.join(CLIENT_AUTH)}")
    if CLIENT_AUTH.get(auth, ssl.CERT_NONE) != ssl.CERT_NONE and "client_ca_file" not in given:
        fail(at, f"tls_server_config: client_auth_type {auth} needs client_ca_file, the CA that signs the clients")
    if "cert_file" not in given or "key_file" not in given:
        return None, None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = versions["min_version"], versions["max_version"]
    cert_node, cert = given["cert_file"]
    key_node, key = given["key_file"]
    for at, file in (
        (cert_node, cert),
        (key_node, key),
        *([given["client_ca_file"]] if "client_ca_file" in given else []),
    ):
        problem = _unreadable(file)
        if problem:
            fail(at, f"{file} {problem}")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        if not isinstance(e, (FileNotFoundError, PermissionError)):
            fail(
                key_node,
                f"{cert} and {key} are not a certificate and its key in PEM ({_ssl_reason(e)}); "
                "check that key_file is the key of cert_file",
            )
        return None, key
    if "client_ca_file" in given:
        ca_node, ca = given["client_ca_file"]
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            if not isinstance(e, (FileNotFoundError, PermissionError)):
                fail(ca_node, f"{ca} is not a CA certificate in PEM ({_ssl_reason(e)})")
    context.verify_mode = CLIENT_AUTH.get(auth, ssl.CERT_NONE)
    return context, key


def _unreadable(file: str) -> str | None:
    p = Path(file)
    if not p.is_absolute():
        return "is a relative path; give the absolute path"
    try:
        with p.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return "does not exist; create it (README: Securing the endpoints) or fix the path"
    except IsADirectoryError:
        return "is a directory; give the file in it"
    except PermissionError:
        return "cannot be read (permission denied); let the service's group read it: chgrp ble-exporter, chmod 640"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return None


def _ssl_reason(e: Exception) -> str:
    reason = getattr(e, "reason", None) or (e.args[1] if len(e.args) > 1 else str(e))
    return str(reason)


def _users(node: yaml.Node, fail: Fail) -> dict[str, bytes]:
    if _scalar(node) is None and isinstance(node, yaml.ScalarNode):
        return {}
    if not isinstance(node, yaml.MappingNode):
        fail(node, "basic_auth_users must be a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, bytes] = {}
    for k, v in node.value:
        user = _scalar(k)
        hashed = _scalar(v)
        if not user:
            fail(k, "basic_auth_users: a user name must be text")
            continue
        if user in users:
            fail(k, f"basic_auth_users: user `{user}` is given twice; keep one")
            continue
        match = _BCRYPT.match(hashed or "")
        if match is None or not 4 <= int(match.group(1)) <= 31:
            # The value is not repeated: it may be a password typed where its hash belongs.
            fail(
                v,
                f"basic_auth_users: the password of `{user}` is not a bcrypt hash; make one with "
                "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` (apache2-utils) or python3 -c 'import bcrypt, getpass; "
                "print(bcrypt.hashpw(getpass.getpass().encode()[:72], bcrypt.gensalt()).decode())'",
            )
            continue
        users[user] = hashed.encode()  # type: ignore[union-attr]
    return users
