"""The YAML config file: its keys, defaults, validation and one-line errors that name the file, the
line and the fix.

The keys live in one table, the `Config` dataclass: each field carries its default, the YAML type it
takes, its check and one line of help (for the man page, `packaging/man-keys.py`). Validation walks
PyYAML's node tree rather than the loaded data, so every problem can name its line, and device MACs and
names are taken as written (an unquoted `11:22:33:44:55:66` would otherwise be a YAML 1.1 sexagesimal
integer, and a device named `yes` a boolean).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ble_exporter.calibration import QUANTITIES, Calibration, Line, problem_with_offset, problem_with_points
from ble_exporter.devices import Device, normalise_mac
from ble_exporter.scanner import ScanMode

DEFAULT_PATH = "/etc/ble-exporter/config.yaml"
MAX_FILE_BYTES = 1024 * 1024
# A real scan: BlueZ takes a good part of a second to start and stop a discovery, the firmware advertises
# every 2.5 s (a shorter scan hears few sensors), and every scan writes a log line. --simulate may go
# below, for tests and soaks that compress time.
MIN_SCAN_SECONDS = 1.0
SCAN_MODES = (ScanMode.AUTO, ScanMode.PASSIVE, ScanMode.ACTIVE)

_ADAPTER = re.compile(r"^hci[0-9]{1,3}$")
_BINDKEY = re.compile(r"^[0-9A-Fa-f]{32}$")
_LEGACY_BINDKEY = re.compile(r"^[0-9A-Fa-f]{24}$")  # MiBeacon v2/v3 (12 bytes): out of scope
_NULL_TAG = "tag:yaml.org,2002:null"
_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# The keys of a device in the long form.
DEVICE_KEYS = ("name", "bindkey", *(f"{q}_{how}" for q in QUANTITIES for how in ("offset", "points")))


class ConfigError(Exception):
    """Every problem found in a config file, each as one line `path:line: problem; fix`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the keys ------------------------------------------------------------------------------------------

Check = Callable[[Any], "str | None"]  # a valid value -> None, else the problem and its fix


@dataclass(frozen=True)
class Key:
    """What the table says of one key (a Config field's metadata)."""

    types: tuple[type, ...]  # what YAML must give; bool never counts as a number
    described: str  # "a number of seconds", for the error when the type is wrong
    help: str  # one line, for the man page
    check: Check | None = None
    shown_default: str | None = None  # the default as the man page says it, where str() would not do


def _key(
    default: Any, help: str, types: tuple[type, ...], described: str, check: Check | None = None, **kw: Any
) -> Any:
    """A Config field that is a key of the file: dataclasses.field with the table's entry as metadata."""
    return field(default=default, metadata={"key": Key(types, described, help, check, **kw)})


def _above_zero(key: str, example: str) -> Check:
    return lambda v: None if v > 0 else f"{key} must be above 0, e.g. {example}"


def _log_file(path: str) -> str | None:
    if not path.strip():
        return "log_file is empty; give a file path"
    if path.startswith("~"):
        return (
            f"log_file `{_shown(path)}` starts with ~, which is not expanded (the service has no home); "
            "write the absolute path, e.g. /var/log/ble-exporter/ble-exporter.log"
        )
    if not path.startswith("/"):
        return (
            f"log_file `{_shown(path)}` is a relative path, which would depend on the directory the exporter "
            "starts in (/ under systemd); write the absolute path, e.g. /var/log/ble-exporter/ble-exporter.log"
        )
    return None


def _tcp_port(port: int) -> str | None:
    return None if 1 <= port <= 65535 else f"listen_port {_shown(str(port))} is not a TCP port; use 1-65535, e.g. 8000"


def _scan_mode(mode: str) -> str | None:
    if mode in SCAN_MODES:
        return None
    return f"scan_mode `{_shown(mode)}` is not one of {', '.join(SCAN_MODES)}"


def _adapter(name: str) -> str | None:
    if _ADAPTER.match(name) or normalise_mac(name) is not None:
        return None
    return (
        f"adapter `{_shown(name)}` is not an adapter name or address; use a name like hci0 or the controller's "
        "address like 00:1A:7D:DA:71:13 (see `bluetoothctl list`)"
    )


def _listen_address(address: str | None) -> str | None:
    if address is None or address in ("", "localhost"):
        return None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return (
            f"listen_address `{_shown(address)}` is not an IP address; "
            "use 0.0.0.0 (all IPv4), :: (all) or one of this machine's addresses"
        )
    return None


SECONDS = ((int, float), "a number of seconds")


@dataclass(frozen=True)
class Config:
    scan_interval_seconds: float = _key(
        30.0,
        "Seconds from the start of one scan to the start of the next.",
        *SECONDS,
        _above_zero("scan_interval_seconds", "30"),
    )
    scan_duration_seconds: float = _key(
        5.0, "How long each scan listens; at most the interval.", *SECONDS, _above_zero("scan_duration_seconds", "5")
    )
    log_file: str = _key(
        "/var/log/ble-exporter/ble-exporter.log",
        "The log file, an absolute path (~ is not expanded). The service can write only under "
        "/var/log/ble-exporter, so keep it there; the exporter reopens the file when logrotate has moved it.",
        (str,),
        "a file path",
        _log_file,
    )
    listen_address: str | None = _key(
        None,
        "Address of the HTTP server: 0.0.0.0 for all IPv4 interfaces, :: for all IPv4 and IPv6 ones, or one "
        "of this machine's addresses.",
        (str,),
        "an IP address",
        _listen_address,
        shown_default="all interfaces",
    )
    listen_port: int = _key(8000, "Port of the HTTP server.", (int,), "a whole number", _tcp_port)
    adapter: tuple[str, ...] = _key(
        ("hci0",),
        "The Bluetooth adapter, or a list of them to scan with together: each a name like hci1 or the "
        "controller's address (stays right when a dongle plugged in renumbers the adapters).",
        (str, list),
        "an adapter name like hci0, an address, or a list of them",
        shown_default="hci0",
    )
    scan_mode: ScanMode = _key(  # noqa: RUF009 (a field specifier; ScanMode is immutable)
        ScanMode.AUTO,
        "passive (no scan requests; needs bluetoothd --experimental), active, or auto: passive where BlueZ "
        "offers it, otherwise active.",
        (str,),
        "auto, passive or active",
        _scan_mode,
    )
    watchdog_silent_scans: int = _key(
        3,
        "Restart the scanner after this many scans in a row that heard no advertisement at all; 0 turns this off.",
        (int,),
        "a whole number",
        lambda v: None if v >= 0 else "watchdog_silent_scans must be 0 (off) or more",
    )
    adapter_reset_after_silent_scans: int = _key(
        3,
        "When renewing the scanner did not help, reset the adapter (power off and on through BlueZ) after "
        "this many more silent scans; at most once in 10 minutes, less often while resets do not help; 0 "
        "turns this off.",
        (int,),
        "a whole number",
        lambda v: None if v >= 0 else "adapter_reset_after_silent_scans must be 0 (off) or more",
    )
    web_config_file: str | None = _key(
        None,
        "An exporter-toolkit web configuration file (as node_exporter's --web.config.file): TLS and basic auth "
        "for the HTTP endpoints (README: Securing the endpoints).",
        (str,),
        "a file path",
        lambda v: (
            None if v.startswith("/") else f"web_config_file `{_shown(v)}` is not an absolute path; write it from /"
        ),
        shown_default="none (plain HTTP)",
    )
    live_page: bool = _key(
        True,
        "Serve the live page at /: every sensor's readings and reception and the scanner's state, refreshed "
        "every scan; false serves a page of links to the endpoints instead.",
        (bool,),
        "true or false",
        shown_default="true",
    )
    devices: tuple[Device, ...] = _key(
        (),
        "The sensors to export: a mapping from MAC address to a name, or to a mapping with name and bindkey "
        "(32 hexadecimal characters) for a sensor that encrypts its advertisements, and its calibration: "
        "temperature_offset (°C) or temperature_points ([[measured, true], [measured, true]]), and "
        "humidity_offset (%RH) or humidity_points.",
        (dict,),
        "a mapping of MAC address to name",
        shown_default="none",
    )
    path: str = "<defaults>"
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def adapters_shown(self) -> str:
        """`hci0`, or `hci0, 00:1A:7D:DA:71:13`: as the log and the views name what is scanned with."""
        return ", ".join(self.adapter)

    def where(self, key: str) -> str:
        """`path:line` of a key, for errors found after loading (e.g. a log file that can't be written)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else self.path

    @property
    def http_address(self) -> str:
        """`*:8000`, `127.0.0.1:8000`, `[::]:8000`: as a URL writes it."""
        host = self.listen_address or "*"
        return f"[{host}]:{self.listen_port}" if ":" in host else f"{host}:{self.listen_port}"


KEYS: dict[str, Key] = {f.name: f.metadata["key"] for f in dataclasses.fields(Config) if "key" in f.metadata}
DEFAULTS = Config()


# --- reading and checking a file -------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError (never anything else) on any problem."""
    return parse_config(read_text(path), str(path))


def read_text(
    path: str | Path, missing: str = "create it (see /usr/share/doc/ble-exporter) or pass --config PATH"
) -> str:
    """A small UTF-8 text file, or ConfigError saying in one line why not (`missing`: the fix when there
    is no such file)."""
    name = str(path)
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError([f"{name}: is a directory, not a config file; pass the file with --config"])
        # O_NONBLOCK only for the open: a FIFO nobody writes to then reads as empty instead of hanging.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.set_blocking(fd, True)
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"{name}: no such file; {missing}"]) from None
    except PermissionError:
        sudo = "" if os.geteuid() == 0 else "; run it as root (sudo), or "
        raise ConfigError([f"{name}: cannot be read (Permission denied){sudo or '; '}check its permissions"]) from None
    except OSError as e:
        raise ConfigError([f"{name}: cannot be read ({e.strerror}); check its permissions"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{name}: larger than {MAX_FILE_BYTES // 1024} KiB; this is not a config file"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: not UTF-8 text; save the file as UTF-8"]) from None


def yaml_root(text: str, path: str) -> yaml.Node | None:
    """The YAML node tree (None for an empty file), or ConfigError with PyYAML's problem in words."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise ConfigError([f"{path}{_yaml_problem(e)}"]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, e.g. a NUL or a control character
        at = text[: e.position].count("\n") + 1
        raise ConfigError([f"{path}:{at}: not valid YAML: {str(e).splitlines()[0]}; remove it"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {str(e).splitlines()[0]}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: not valid YAML: nested too deeply; a config needs at most three levels"]) from None


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate YAML text into a Config; raises ConfigError listing every problem found."""
    root = yaml_root(text, path)
    if root is None:  # empty, or only comments: every key has its default
        return Config(path=path)
    return _Validator(path).config(root)


# PyYAML's words for the usual slips, and whether its problem mark or its context mark (where the broken
# construct began) names the line to look at.
_YAML_SLIPS: tuple[tuple[str, bool, str], ...] = (
    (
        "mapping values are not allowed here",
        False,
        "a `: ` where no value can start: is a colon missing on the line above, does a value with `: ` "
        "need quotes, or is this line indented wrongly?",
    ),
    (
        "expected <block end>",
        False,
        "this line does not line up with the block above it: check its indentation (devices two spaces "
        "under `devices:`) and that it reads `key: value`",
    ),
    ("could not find expected ':'", True, "no colon after the key; write `key: value`"),
    ("found unexpected end of stream", True, "a quote opened here is never closed; close it"),
    ("expected ',' or '}'", True, "a `{` opened here is never closed; close it"),
    ("expected ',' or ']'", True, "a `[` opened here is never closed; close it"),
    ("but found another document", False, "a second document (`---`); a config is one document, remove it"),
    ("found undefined alias", False, "`*` starts a YAML alias; put the value in quotes"),
    ("that cannot start any token", False, "a character no value can start with; put the value in quotes"),
)


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    """`:line: not valid YAML: what is wrong; fix` for PyYAML's error."""
    problem = e.problem or e.context or "invalid YAML"
    if "'\\t'" in problem:
        mark = e.problem_mark
        text = f"{problem}; indent with spaces, not tabs"
    else:
        slip = next(((at_context, words) for start, at_context, words in _YAML_SLIPS if start in problem), None)
        if slip is None:
            mark, text = e.problem_mark, problem
        else:
            mark, text = (e.context_mark if slip[0] and e.context_mark else e.problem_mark), slip[1]
    mark = mark or e.problem_mark or e.context_mark
    return f"{f':{mark.line + 1}' if mark else ''}: not valid YAML: {text}"


class _Validator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[tuple[int, str]] = []  # (line, message)

    def fail(self, node: yaml.Node, message: str) -> None:
        self.fail_at(node.start_mark.line + 1, message)

    def fail_at(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def error(self) -> ConfigError:
        """Every problem found, in line order."""
        return ConfigError([f"{self.path}:{line}: {message}" for line, message in sorted(self.problems)])

    def config(self, root: yaml.Node) -> Config:
        if not isinstance(root, yaml.MappingNode):
            self.fail(root, "the file must be a mapping of `key: value` lines (see the shipped example)")
            raise self.error()
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in root.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(
                    key_node,
                    f"a key must be a name like listen_port, not a list or mapping; valid keys: {', '.join(KEYS)}",
                )
                continue
            key = key_node.value
            if key not in KEYS:
                import difflib  # only for a mistake: not loaded by a daemon whose config is fine

                close = difflib.get_close_matches(str(key), KEYS, n=1)
                if normalise_mac(str(key)) is not None:
                    fix = "a device? indent it under `devices:` like the devices above it (two spaces)"
                elif close:
                    fix = f"did you mean `{close[0]}`?"
                else:
                    fix = f"valid keys: {', '.join(KEYS)}"
                self.fail(key_node, f"unknown key `{_shown(str(key))}`; {fix}")
                continue
            if key in lines:
                self.fail(key_node, f"`{key}` is given twice; keep one")
                continue
            lines[key] = key_node.start_mark.line + 1
            if key == "devices":
                value = self.devices(value_node)
            elif key == "adapter":
                value = self.adapters(value_node)
            else:
                value = self.value(key, value_node)
            if value is not _INVALID:
                values[key] = value
        for key, value in values.items():
            check = KEYS[key].check
            problem = check(value) if check is not None and value is not None else None
            if problem is not None:
                self.fail_at(lines[key], problem)
        merged = {**{k: getattr(DEFAULTS, k) for k in KEYS}, **values}
        interval, duration = merged["scan_interval_seconds"], merged["scan_duration_seconds"]
        if 0 < interval < duration:
            self.fail_at(
                lines.get("scan_duration_seconds", root.start_mark.line + 1),
                f"scan_duration_seconds ({duration}) is longer than scan_interval_seconds ({interval}); "
                "make it at most the interval",
            )
        if self.problems:
            raise self.error()
        merged["scan_mode"] = ScanMode(merged["scan_mode"])
        return Config(**merged, path=self.path, lines=lines)

    def value(self, key: str, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"`{key}` must be a single value, not a list or mapping")
            return _INVALID
        value = _construct(node)
        if key in ("listen_address", "web_config_file") and value is None:
            return None
        spec = KEYS[key]
        if (isinstance(value, bool) and bool not in spec.types) or not isinstance(value, spec.types):
            self.fail(node, f"`{key}` must be {spec.described}, not `{_shown(node.value)}`{_type_hint(node, spec)}")
            return _INVALID
        if key.endswith("_seconds") and not _finite(value):
            self.fail(node, f"`{key}` must be a finite number of seconds, not `{_shown(node.value)}`")
            return _INVALID
        if isinstance(value, str) and "\0" in value:
            self.fail(node, f"`{key}` contains a NUL character; remove it")
            return _INVALID
        return value

    def adapters(self, node: yaml.Node) -> Any:
        """One adapter or a list, each a name (hci1) or a controller address, taken as written (an
        unquoted address of digits would be a YAML 1.1 sexagesimal number)."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            self.fail(node, "`adapter` is an empty list; give at least one adapter, e.g. hci0")
            return _INVALID
        adapters: dict[str, int] = {}
        for item in items:
            if not isinstance(item, yaml.ScalarNode) or item.tag == _NULL_TAG:
                self.fail(item, "`adapter` must be an adapter name like hci0, an address, or a list of them")
                return _INVALID
            problem = _adapter(item.value)
            if problem is not None:
                self.fail(item, problem)
                return _INVALID
            name = normalise_mac(item.value) or item.value
            line = item.start_mark.line + 1
            if name in adapters:
                self.fail(item, f"adapter {name} is listed twice (also on line {adapters[name]}); keep one")
                return _INVALID
            adapters[name] = line
        return tuple(adapters)

    def devices(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return ()
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, '`devices` must be a mapping of MAC address to name, e.g. "A4:C1:38:12:34:56": kitchen')
            return _INVALID
        devices: list[Device] = []
        macs: dict[str, int] = {}
        names: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, "a device key must be a MAC address like A4:C1:38:12:34:56")
                continue
            mac = normalise_mac(key_node.value)
            if mac is None:
                self.fail(
                    key_node,
                    f"`{_shown(key_node.value)}` is not a MAC address; write six hex pairs like A4:C1:38:12:34:56",
                )
                continue
            line = key_node.start_mark.line + 1
            if mac in macs:
                self.fail(key_node, f"device {mac} is listed twice (also on line {macs[mac]}); keep one")
                continue
            macs[mac] = line
            name, bindkey, calibration = self.device_entry(mac, value_node)
            if name is None:
                continue
            if name in names:
                self.fail(
                    value_node,
                    f"device name `{name}` is used twice (also on line {names[name]}); names must differ",
                )
                continue
            names[name] = line
            devices.append(Device(mac, name, bindkey, calibration))
        return tuple(devices)

    def device_entry(self, mac: str, node: yaml.Node) -> tuple[str | None, bytes | None, Calibration | None]:
        if not isinstance(node, yaml.MappingNode):
            return self.device_name(mac, node), None, None
        fields: dict[str, yaml.Node] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.value not in DEVICE_KEYS:
                key = _shown(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                self.fail(
                    k, f"device {mac}: unknown key `{key}`; a device takes {', '.join(f'`{k}`' for k in DEVICE_KEYS)}"
                )
            elif k.value in fields:
                self.fail(k, f"device {mac}: `{k.value}` is given twice; keep one")
            else:
                fields[k.value] = v
        if "name" not in fields:
            self.fail(node, f"device {mac} has no `name`; add `name: <a name>`")
            return None, None, None
        name = self.device_name(mac, fields["name"])
        bindkey = self.bindkey(mac, fields["bindkey"]) if "bindkey" in fields else None
        lines = {q: line for q in QUANTITIES if (line := self.calibration_line(mac, q, fields)) is not None}
        return name, bindkey, Calibration(**lines) if lines else None

    def calibration_line(self, mac: str, quantity: str, fields: dict[str, yaml.Node]) -> Line | None:
        """`<quantity>_offset: 0.5` or `<quantity>_points: [[measured, true], [measured, true]]`."""
        offset_key, points_key = f"{quantity}_offset", f"{quantity}_points"
        offset, points = fields.get(offset_key), fields.get(points_key)
        if offset is not None and points is not None:
            self.fail(
                points, f"device {mac}: `{offset_key}` and `{points_key}` both calibrate the {quantity}; keep one"
            )
            return None
        if offset is not None:
            value = _number(offset)
            problem = "must be a number" if value is None else problem_with_offset(quantity, value)
            if problem or value is None:
                example = "-0.4" if quantity == "temperature" else "3.5"
                self.fail(offset, f"device {mac}: `{offset_key}` {problem}; for example `{offset_key}: {example}`")
                return None
            return Line(offset=value)
        if points is not None:
            pairs = _pairs(points)
            problem = "must be two [measured, true] pairs" if pairs is None else problem_with_points(quantity, pairs)
            if problem or pairs is None:
                example = (
                    "[[20.0, 20.4], [30.0, 30.9]]" if quantity == "temperature" else "[[33.0, 33.1], [72.0, 75.3]]"
                )
                self.fail(points, f"device {mac}: `{points_key}` {problem}; for example `{points_key}: {example}`")
                return None
            return Line.through((pairs[0][0], pairs[1][0]), (pairs[0][1], pairs[1][1]))
        return None

    def device_name(self, mac: str, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"device {mac}: the name must be text, e.g. living_room")
            return None
        if node.tag == _NULL_TAG or not node.value.strip():
            self.fail(node, f"device {mac} has an empty name; give it a name, e.g. living_room")
            return None
        name = str(node.value).strip()
        control = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI), None)
        if control is not None:
            self.fail(
                node,
                f"device {mac}: the name contains the control character U+{ord(control):04X}; names go into "
                "the log, /metrics and the terminal view, so remove it",
            )
            return None
        return name

    def bindkey(self, mac: str, node: yaml.Node) -> bytes | None:
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if isinstance(text, str) and _LEGACY_BINDKEY.match(text):
            self.fail(
                node,
                f"device {mac}: the bindkey has 24 hex characters, a legacy MiBeacon v2/v3 key, which is not "
                "supported (pvvx and the LYWSD03MMC's own firmware use 32); use this sensor's 32-character key",
            )
            return None
        if not isinstance(text, str) or not _BINDKEY.match(text):
            # The value itself is not repeated: it may be a real key with a typo.
            self.fail(
                node,
                f"device {mac}: the bindkey must be 32 hex characters (16 bytes), as the flasher shows it",
            )
            return None
        return bytes.fromhex(text)


def _number(node: yaml.Node) -> float | None:
    """A YAML int or float (not a bool, not text), as a float."""
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
        return None
    value = yaml.safe_load(node.value)  # the plain scalar alone: YAML's own int/float rules (.inf, 1_000)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _pairs(node: yaml.Node) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
        return None
    pairs = []
    for pair in node.value:
        if not isinstance(pair, yaml.SequenceNode) or len(pair.value) != 2:
            return None
        measured, true = (_number(v) for v in pair.value)
        if measured is None or true is None:
            return None
        pairs.append((measured, true))
    return pairs[0], pairs[1]


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder text where shown
_SCIENTIFIC = re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$")  # 1e3: YAML 1.1 wants 1.0e+3
_INVALID = object()  # a value that failed its type check: reported, and the key's default stands meanwhile


def _type_hint(node: yaml.ScalarNode, spec: Key) -> str:
    """The likely slip behind a value of the wrong type."""
    if node.style in ("'", '"'):
        try:
            unquoted = yaml.safe_load(node.value)
        except yaml.YAMLError:
            unquoted = None
        if (bool in spec.types or not isinstance(unquoted, bool)) and isinstance(unquoted, spec.types):
            return "; remove the quotes"
    if _SCIENTIFIC.match(node.value):
        return f"; YAML 1.1 reads `{_shown(node.value)}` as text (it would need `1.0e+3`): write the plain number"
    return ""


def readable_by_others(path: str, what: str) -> str | None:
    """A warning when a file holding secrets (`what`) can be read by every user on the machine."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & stat.S_IROTH:
        return None
    return (
        f"{path} holds {what} and every user on this machine can read it; run `sudo chmod 640 {path}` and "
        f"`sudo chgrp ble-exporter {path}`"
    )


def exposed_secrets(cfg: Config) -> list[str]:
    """Warnings (not errors) about secrets other users can read: the bindkeys in the config."""
    if not any(d.bindkey is not None for d in cfg.devices):
        return []
    warning = readable_by_others(cfg.path, "bindkeys (with one, anyone can forge that sensor's readings)")
    return [warning] if warning else []


def radio_problems(cfg: Config) -> list[str]:
    """What a config that is valid on its own cannot do with a real adapter (`run` and `watch` without
    --simulate, and `check-config`)."""
    return [
        f"{cfg.where(key)}: {key} {getattr(cfg, key):g} is below {MIN_SCAN_SECONDS:g} s, too short for a real "
        f"scan (BlueZ needs a good part of a second to start and stop one, and each scan logs a line); "
        f"use at least {MIN_SCAN_SECONDS:g} (the default is {getattr(DEFAULTS, key):g})"
        for key in ("scan_interval_seconds", "scan_duration_seconds")
        if getattr(cfg, key) < MIN_SCAN_SECONDS
    ]


def _construct(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits
        return node.value
    finally:
        loader.dispose()


def _finite(value: object) -> bool:
    try:
        return isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _shown(text: str, limit: int = 40) -> str:
    """A value quoted in an error, cut short: the line must stay one readable line."""
    return text if len(text) <= limit else text[:limit] + "..."
