"""The YAML config file: defaults, validation and one-line errors that name the file, the line and the fix.

Validation walks PyYAML's node tree rather than the loaded data, so every problem can name its line,
and device MACs and names are taken as written (an unquoted `11:22:33:44:55:66` would otherwise be a
YAML 1.1 sexagesimal integer, and a device named `yes` a boolean).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = "/etc/ble-exporter/config.yaml"
MAX_FILE_BYTES = 1024 * 1024
SCAN_MODES = ("auto", "passive", "active")

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_ADAPTER = re.compile(r"^hci[0-9]{1,3}$")
_BINDKEY = re.compile(r"^[0-9A-Fa-f]{32}$")
_NULL_TAG = "tag:yaml.org,2002:null"


class ConfigError(Exception):
    """Every problem found in a config file, each as one line `path:line: problem; fix`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Device:
    mac: str  # upper case, ':'-separated
    name: str
    bindkey: bytes | None = field(default=None, repr=False)  # never in a repr, log or error


@dataclass(frozen=True)
class Config:
    scan_interval_seconds: float = 30.0
    scan_duration_seconds: float = 5.0
    log_file: str = "/var/log/ble-exporter/ble-exporter.log"
    listen_address: str | None = None  # None: all interfaces
    listen_port: int = 8000
    adapter: str = "hci0"
    scan_mode: str = "auto"
    watchdog_silent_scans: int = 3  # restart the scanner after this many scans without any advert; 0: never
    devices: tuple[Device, ...] = ()
    path: str = "<defaults>"
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def where(self, key: str) -> str:
        """`path:line` of a key, for errors found after loading (e.g. a log file that can't be written)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else self.path


_DEFAULTS = Config()
KEYS = (
    "scan_interval_seconds",
    "scan_duration_seconds",
    "log_file",
    "listen_address",
    "listen_port",
    "adapter",
    "scan_mode",
    "watchdog_silent_scans",
    "devices",
)


def normalise_mac(text: str) -> str | None:
    """`a4-c1-38-aa-bb-cc` -> `A4:C1:38:AA:BB:CC`; None if it is not six hex pairs."""
    if not _MAC.match(text):
        return None
    return text.replace("-", ":").upper()


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError (never anything else) on any problem."""
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
        raise ConfigError(
            [f"{name}: no such file; create it (see /usr/share/doc/ble-exporter) or pass --config PATH"]
        ) from None
    except OSError as e:
        raise ConfigError([f"{name}: cannot be read ({e.strerror}); check its permissions"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{name}: larger than {MAX_FILE_BYTES // 1024} KiB; this is not a config file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: not UTF-8 text; save the file as UTF-8"]) from None
    return parse_config(text, name)


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate YAML text into a Config; raises ConfigError listing every problem found."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        hint = "; indent with spaces, not tabs" if "'\\t'" in str(problem) else ""
        raise ConfigError([f"{path}{line}: not valid YAML: {problem}{hint}"]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, e.g. a NUL or a control character
        at = text[: e.position].count("\n") + 1
        raise ConfigError([f"{path}:{at}: not valid YAML: {str(e).splitlines()[0]}; remove it"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {str(e).splitlines()[0]}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: not valid YAML: nested too deeply; a config needs at most three levels"]) from None
    if root is None:
        raise ConfigError([f"{path}: the file is empty; it needs at least `devices:` (see the shipped example)"])
    return _Validator(path).config(root)


class _Validator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []

    def fail(self, node: yaml.Node, message: str) -> None:
        self.problems.append(f"{self.path}:{node.start_mark.line + 1}: {message}")

    def config(self, root: yaml.Node) -> Config:
        if not isinstance(root, yaml.MappingNode):
            self.fail(root, "the file must be a mapping of `key: value` lines (see the shipped example)")
            raise ConfigError(self.problems)
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
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                fix = f"did you mean `{close[0]}`?" if close else f"valid keys: {', '.join(KEYS)}"
                self.fail(key_node, f"unknown key `{key}`; {fix}")
                continue
            if key in values:
                self.fail(key_node, f"`{key}` is given twice; keep one")
                continue
            lines[key] = key_node.start_mark.line + 1
            values[key] = self.value(key, value_node)
        cfg = self.checked(values, lines, root)
        if self.problems:
            raise ConfigError(self.problems)
        return cfg

    def value(self, key: str, node: yaml.Node) -> Any:
        if key == "devices":
            return self.devices(node)
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"`{key}` must be a single value, not a list or mapping")
            return None
        value = _construct(node)
        if key == "listen_address" and value is None:
            return None
        expected, described = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            self.fail(node, f"`{key}` must be {described}, not `{_shown(node.value)}`")
            return None
        if key.endswith("_seconds") and not _finite(value):
            self.fail(node, f"`{key}` must be a finite number of seconds, not `{_shown(node.value)}`")
            return None
        if isinstance(value, str) and "\0" in value:
            self.fail(node, f"`{key}` contains a NUL character; remove it")
            return None
        return value

    def devices(self, node: yaml.Node) -> tuple[Device, ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return ()
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, '`devices` must be a mapping of MAC address to name, e.g. "A4:C1:38:12:34:56": kitchen')
            return None
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
            name, bindkey = self.device_entry(mac, value_node)
            if name is None:
                continue
            if name in names:
                self.fail(
                    value_node,
                    f"device name `{name}` is used twice (also on line {names[name]}); names must differ",
                )
                continue
            names[name] = line
            devices.append(Device(mac, name, bindkey))
        return tuple(devices)

    def device_entry(self, mac: str, node: yaml.Node) -> tuple[str | None, bytes | None]:
        if isinstance(node, yaml.MappingNode):
            fields: dict[str, yaml.Node] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode) or k.value not in ("name", "bindkey"):
                    key = _shown(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                    self.fail(k, f"device {mac}: unknown key `{key}`; a device takes `name` and `bindkey`")
                elif k.value in fields:
                    self.fail(k, f"device {mac}: `{k.value}` is given twice; keep one")
                else:
                    fields[k.value] = v
            if "name" not in fields:
                self.fail(node, f"device {mac} has no `name`; add `name: <a name>`")
                return None, None
            name = self.device_name(mac, fields["name"])
            bindkey = self.bindkey(mac, fields["bindkey"]) if "bindkey" in fields else None
            return name, bindkey
        return self.device_name(mac, node), None

    def device_name(self, mac: str, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"device {mac}: the name must be text, e.g. living_room")
            return None
        if node.tag == _NULL_TAG or not node.value.strip():
            self.fail(node, f"device {mac} has an empty name; give it a name, e.g. living_room")
            return None
        return str(node.value).strip()

    def bindkey(self, mac: str, node: yaml.Node) -> bytes | None:
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if not isinstance(text, str) or not _BINDKEY.match(text):
            # The value itself is not repeated: it may be a real key with a typo.
            self.fail(
                node,
                f"device {mac}: the bindkey must be 32 hex characters (16 bytes), as the flasher shows it",
            )
            return None
        return bytes.fromhex(text)

    def checked(self, values: dict[str, Any], lines: dict[str, int], root: yaml.Node) -> Config:
        """Apply defaults, then the checks that involve more than one key."""
        merged = {k: v for k, v in values.items() if v is not None or k == "listen_address"}
        if values.get("devices") is None:
            merged.pop("devices", None)
        cfg_values: dict[str, Any] = {k: getattr(_DEFAULTS, k) for k in KEYS}
        cfg_values.update(merged)

        def at(key: str) -> str:
            return f"{self.path}:{lines.get(key, root.start_mark.line + 1)}"

        interval = cfg_values["scan_interval_seconds"]
        duration = cfg_values["scan_duration_seconds"]
        if "scan_interval_seconds" in merged and interval <= 0:
            self.problems.append(f"{at('scan_interval_seconds')}: scan_interval_seconds must be above 0, e.g. 30")
        if "scan_duration_seconds" in merged and duration <= 0:
            self.problems.append(f"{at('scan_duration_seconds')}: scan_duration_seconds must be above 0, e.g. 5")
        elif interval > 0 and duration > interval:
            self.problems.append(
                f"{at('scan_duration_seconds')}: scan_duration_seconds ({duration}) is longer than "
                f"scan_interval_seconds ({interval}); make it at most the interval"
            )
        port = cfg_values["listen_port"]
        if not 1 <= port <= 65535:
            self.problems.append(
                f"{at('listen_port')}: listen_port {_shown(str(port))} is not a TCP port; use 1-65535, e.g. 8000"
            )
        if cfg_values["scan_mode"] not in SCAN_MODES:
            mode = _shown(cfg_values["scan_mode"])
            self.problems.append(f"{at('scan_mode')}: scan_mode `{mode}` is not one of {', '.join(SCAN_MODES)}")
        if cfg_values["watchdog_silent_scans"] < 0:
            self.problems.append(f"{at('watchdog_silent_scans')}: watchdog_silent_scans must be 0 (off) or more")
        if not str(cfg_values["log_file"]).strip():
            self.problems.append(f"{at('log_file')}: log_file is empty; give a file path")
        if not _ADAPTER.match(str(cfg_values["adapter"])):
            self.problems.append(
                f"{at('adapter')}: adapter `{_shown(str(cfg_values['adapter']))}` is not an adapter name; "
                "use one like hci0 (see `bluetoothctl list` or `ls /sys/class/bluetooth`)"
            )
        address = cfg_values["listen_address"]
        if address is not None and address not in ("", "localhost"):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                self.problems.append(
                    f"{at('listen_address')}: listen_address `{_shown(address)}` is not an IP address; "
                    "use 0.0.0.0 (all IPv4), :: (all) or one of this machine's addresses"
                )
        return Config(**cfg_values, path=self.path, lines=lines)


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "scan_interval_seconds": ((int, float), "a number of seconds"),
    "scan_duration_seconds": ((int, float), "a number of seconds"),
    "log_file": ((str,), "a file path"),
    "listen_address": ((str,), "an IP address"),
    "listen_port": ((int,), "a whole number"),
    "adapter": ((str,), "an adapter name like hci0"),
    "scan_mode": ((str,), "auto, passive or active"),
    "watchdog_silent_scans": ((int,), "a whole number"),
}


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
