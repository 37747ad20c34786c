"""Config loading and validation: every rule gives a one-line `path:line: problem; fix`."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from support import REPO, run_cli

from ble_exporter.config import KEYS, Config, ConfigError, load_config, parse_config, radio_problems
from ble_exporter.devices import Device, normalise_mac

SHIPPED = REPO / "etc" / "ble-exporter" / "config.yaml"
KEY = "231d39c1d7cc1ab1aee224cd096db932"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.problems


def test_shipped_config_is_valid_and_matches_the_defaults() -> None:
    cfg = load_config(SHIPPED)
    defaults = Config()
    for key in (
        "scan_interval_seconds",
        "scan_duration_seconds",
        "listen_port",
        "adapter",
        "scan_mode",
        "log_file",
    ):
        assert getattr(cfg, key) == getattr(defaults, key), key
    assert cfg.devices == ()


def test_the_shipped_configs_commented_adapter_list_is_valid() -> None:
    """The list form the shipped config shows, uncommented in place of the default, is a valid config."""
    text = SHIPPED.read_text()
    assert "\nadapter: hci0\n#adapter: [" in text
    cfg = parse_config(text.replace("\nadapter: hci0\n#adapter: [", "\nadapter: ["), str(SHIPPED))
    assert cfg.adapter == ("hci0", "00:1A:7D:DA:71:13")


SPEC_EXAMPLE = """
scan_interval_seconds: 30
scan_duration_seconds: 5
log_file: "./logs/ble_exporter.log"
listen_port: 8000
devices:
  "A4:C1:38:AA:BB:CC": "living_room"
  "a4-c1-38-dd-ee-ff": "bedroom"
"""


def test_spec_example_config_with_an_absolute_log_file() -> None:
    cfg = parse_config(SPEC_EXAMPLE.replace("./logs/", "/var/log/ble-exporter/"), "c.yaml")
    assert cfg.devices == (Device("A4:C1:38:AA:BB:CC", "living_room"), Device("A4:C1:38:DD:EE:FF", "bedroom"))
    assert cfg.log_file == "/var/log/ble-exporter/ble_exporter.log"
    assert cfg.where("listen_port") == "c.yaml:5"


@pytest.mark.parametrize(
    ("log_file", "expected"),
    [
        ("./logs/ble_exporter.log", "c.yaml:1: log_file `./logs/ble_exporter.log` is a relative path"),
        ("~/ble-test/x.log", "c.yaml:1: log_file `~/ble-test/x.log` starts with ~, which is not expanded"),
    ],
)
def test_a_log_file_must_be_an_absolute_path(log_file: str, expected: str) -> None:
    """Under systemd a relative path lands under /, and `~` made a directory named `~` (the spec's own
    example has a relative path: the issue that found this stands over it)."""
    (problem,) = problems(f"log_file: {log_file}\n")
    assert problem.startswith(expected) and "write the absolute path" in problem


def test_unquoted_digit_mac_and_yaml_keywords_are_taken_as_written() -> None:
    # YAML 1.1 would read 11:22:33:44:55:66 as a sexagesimal integer and `yes` as True.
    cfg = parse_config("devices:\n  11:22:33:44:55:66: yes\n", "c.yaml")
    assert cfg.devices == (Device("11:22:33:44:55:66", "yes"),)


def test_device_with_bindkey() -> None:
    cfg = parse_config(f"devices:\n  A4:C1:38:AA:BB:CC: {{name: shed, bindkey: {KEY.upper()}}}\n", "c.yaml")
    assert cfg.devices[0].bindkey == bytes.fromhex(KEY)
    assert KEY not in repr(cfg) and KEY.upper() not in repr(cfg)


def test_the_live_page_is_on_unless_turned_off() -> None:
    assert Config().live_page is True
    assert parse_config("live_page: false\n").live_page is False
    assert parse_config("live_page: true\n").live_page is True


def test_empty_devices_is_valid() -> None:
    assert parse_config("devices: {}\n").devices == ()
    assert parse_config("devices:\n").devices == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("devices: [", "c.yaml:1: not valid YAML"),
        ("a:\n\t- b\n", "indent with spaces, not tabs"),
        ("- just\n- a list\n", "c.yaml:1: the file must be a mapping"),
        (
            "scan_intervall_seconds: 3\n",
            "c.yaml:1: unknown key `scan_intervall_seconds`; did you mean `scan_interval_seconds`?",
        ),
        ("colour: red\n", "valid keys:"),
        ("listen_port: eighty\n", "c.yaml:1: `listen_port` must be a whole number, not `eighty`"),
        ("listen_port: true\n", "`listen_port` must be a whole number"),
        ("scan_interval_seconds: [1]\n", "must be a single value"),
        ("scan_interval_seconds: 0\n", "scan_interval_seconds must be above 0"),
        ("scan_interval_seconds: -5\n", "scan_interval_seconds must be above 0"),
        ("scan_duration_seconds: 0\n", "scan_duration_seconds must be above 0"),
        (
            "scan_interval_seconds: 10\nscan_duration_seconds: 11\n",
            "c.yaml:2: scan_duration_seconds (11) is longer",
        ),
        ("listen_port: 0\n", "listen_port 0 is not a TCP port; use 1-65535"),
        ("listen_port: 65536\n", "listen_port 65536 is not a TCP port"),
        ("scan_mode: loud\n", "scan_mode `loud` is not one of auto, passive, active"),
        ("adapter: ../../etc\n", "adapter `../../etc` is not an adapter name or address; use a name like hci0"),
        ("adapter: [hci0, hci1, hci0]\n", "c.yaml:1: adapter hci0 is listed twice (also on line 1); keep one"),
        (
            "adapter:\n  - 00:1a:7d:da:71:13\n  - 00-1A-7D-DA-71-13\n",
            "c.yaml:3: adapter 00:1A:7D:DA:71:13 is listed twice",
        ),
        ("adapter: []\n", "`adapter` is an empty list; give at least one adapter"),
        ("adapter: [hci0, [hci1]]\n", "`adapter` must be an adapter name like hci0, an address, or a list of them"),
        ("adapter:\n  - hci0\n  - 00:1A:7D:DA:71\n", "c.yaml:3: adapter `00:1A:7D:DA:71` is not an adapter name"),
        ("adapter: {hci0: 1}\n", "`adapter` must be an adapter name like hci0, an address, or a list of them"),
        ("listen_address: not-an-ip\n", "listen_address `not-an-ip` is not an IP address"),
        ("devices: [a, b]\n", "`devices` must be a mapping of MAC address to name"),
        ("devices:\n  A4:C1:38:AA:BB: x\n", "c.yaml:2: `A4:C1:38:AA:BB` is not a MAC address"),
        ("devices:\n  A4:C1:38:AA:BB:GG: x\n", "is not a MAC address"),
        ("devices:\n  A4:C1-38:AA:BB:CC: x\n", "is not a MAC address"),
        (
            "devices:\n  A4:C1:38:AA:BB:CC: a\n  a4-c1-38-aa-bb-cc: b\n",
            "c.yaml:3: device A4:C1:38:AA:BB:CC is listed twice (also on line 2)",
        ),
        (
            "devices:\n  A4:C1:38:AA:BB:CC: a\n  A4:C1:38:AA:BB:CD: a\n",
            "c.yaml:3: device name `a` is used twice",
        ),
        ('devices:\n  A4:C1:38:AA:BB:CC: ""\n', "has an empty name"),
        ("devices:\n  A4:C1:38:AA:BB:CC:\n", "has an empty name"),
        ("devices:\n  A4:C1:38:AA:BB:CC: {bindkey: " + KEY + "}\n", "has no `name`"),
        ("devices:\n  A4:C1:38:AA:BB:CC: {name: a, key: " + KEY + "}\n", "unknown key `key`"),
        (
            "devices:\n  A4:C1:38:AA:BB:CC: {name: a, bindkey: 1234}\n",
            "the bindkey must be 32 hex characters",
        ),
        (
            # xiaomi-ble tests/test_parser.py test_bindkey_wrong_legacy: a 12-byte MiBeacon v2/v3 key
            "devices:\n  A4:C1:38:AA:BB:CC: {name: a, bindkey: b853075158487aa39a5b5ea9}\n",
            "c.yaml:2: device A4:C1:38:AA:BB:CC: the bindkey has 24 hex characters, a legacy MiBeacon v2/v3 key",
        ),
        ("devices:\n  A4:C1:38:AA:BB:CC: [a]\n", "the name must be text"),
        ("listen_port: 1\nlisten_port: 2\n", "c.yaml:2: `listen_port` is given twice"),
        ('listen_port: "8000"\n', "c.yaml:1: `listen_port` must be a whole number, not `8000`; remove the quotes"),
        ("live_page: 0\n", "c.yaml:1: `live_page` must be true or false, not `0`"),
        ("live_page: off please\n", "`live_page` must be true or false, not `off please`"),
        ('live_page: "false"\n', "c.yaml:1: `live_page` must be true or false, not `false`; remove the quotes"),
        ("scan_interval_seconds: 1e3\n", "YAML 1.1 reads `1e3` as text (it would need `1.0e+3`)"),
        ("listen_port 8000\nadapter: hci0\n", "c.yaml:2: not valid YAML: a `: ` where no value can start"),
        ("scan_mode: auto\nlisten_port 8000\nadapter: hci0\n", "c.yaml:2: not valid YAML: no colon after the key"),
        (
            'devices:\n  "A4:C1:38:12:34:56" kitchen\n',
            "c.yaml:2: not valid YAML: this line does not line up with the block above it",
        ),
        ('devices:\n  "A4:C1:38:12:34:56: kitchen\n', "c.yaml:2: not valid YAML: a quote opened here is never closed"),
        (
            'devices:\n  "A4:C1:38:12:34:56": kitchen\n"A4:C1:38:12:34:57": bedroom\n',
            "c.yaml:3: unknown key `A4:C1:38:12:34:57`; a device? indent it under `devices:`",
        ),
        (
            'devices:\n  "A4:C1:38:12:34:56": "esc\\x1b[2Jx"\n',
            "c.yaml:2: device A4:C1:38:12:34:56: the name contains the control character U+001B",
        ),
        ('devices:\n  "A4:C1:38:12:34:56": "new\\nline"\n', "the name contains the control character U+000A"),
        ('devices:\n  "A4:C1:38:12:34:56": "rtl\\u202eevil"\n', "the name contains the control character U+202E"),
    ],
)
def test_each_problem_is_one_line_naming_file_line_and_fix(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all("\n" not in p and p.startswith("c.yaml") for p in found)


def test_several_problems_are_all_reported() -> None:
    found = problems("listen_port: 0\nscan_mode: x\ncolour: red\n")
    assert len(found) == 3


def test_bindkey_never_appears_in_an_error() -> None:
    bad = KEY[:-1] + "z"
    found = problems(f"devices:\n  A4:C1:38:AA:BB:CC: {{name: a, bindkey: {bad}}}\n")
    assert all(bad not in p for p in found)


@pytest.mark.parametrize(
    ("text", "mac"),
    [
        ("a4:c1:38:aa:bb:cc", "A4:C1:38:AA:BB:CC"),
        ("A4-C1-38-AA-BB-CC", "A4:C1:38:AA:BB:CC"),
        ("A4C138AABBCC", None),
    ],
)
def test_normalise_mac(text: str, mac: str | None) -> None:
    assert normalise_mac(text) == mac


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"devices:\n  \xff\xfe: x\n")
    with pytest.raises(ConfigError, match=r"bin.yaml:2: not UTF-8"):
        load_config(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * (10 * 1024 * 1024) + b"\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(huge)


# ---- fuzz: broken config files through the real command line ----
# Each case is a file (or something standing where the file should be) that must give exit status 2,
# one `ble-exporter: error: <path>[:line]: ...` line per problem, no traceback, and do so quickly.

_LOL = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
BILLION_LAUGHS = f"devices: &a {_LOL}\n" + "".join(
    f"{key}: &{b} [{', '.join(['*' + a] * 9)}]\n"
    for key, a, b in zip(
        ("scan_interval_seconds", "scan_duration_seconds", "log_file", "adapter", "scan_mode", "listen_address"),
        "abcdef",
        "bcdefg",
        strict=True,
    )
)
DEEP = 5000

BROKEN: dict[str, tuple[bytes, str]] = {  # id -> (file content, a part of the expected message)
    "wrong-type-port": (b"listen_port: eighty\n", ":1: `listen_port` must be a whole number, not `eighty`"),
    "wrong-type-bool-interval": (b"scan_interval_seconds: yes\n", ":1: `scan_interval_seconds` must be a number"),
    "wrong-type-devices-list": (b"devices: [a, b]\n", ":1: `devices` must be a mapping"),
    "wrong-type-port-float": (b"listen_port: 80.5\n", "must be a whole number, not `80.5`"),
    "bad-mac-short": (b"devices:\n  A4:C1:38:AA:BB: x\n", ":2: `A4:C1:38:AA:BB` is not a MAC address"),
    "bad-mac-non-hex": (b"devices:\n  A4:C1:38:AA:BB:GG: x\n", ":2: `A4:C1:38:AA:BB:GG` is not a MAC address"),
    "bad-mac-integer": (b"devices:\n  123: x\n", ":2: `123` is not a MAC address"),
    "bad-mac-list": (b"devices:\n  [1]: x\n", ":2: a device key must be a MAC address"),
    "duplicate-mac": (b"devices:\n  A4:C1:38:AA:BB:CC: a\n  a4-c1-38-aa-bb-cc: b\n", ":3: device A4:C1:38:AA:BB:CC"),
    "duplicate-name": (b"devices:\n  A4:C1:38:AA:BB:CC: a\n  A4:C1:38:AA:BB:CD: a\n", ":3: device name `a` is used"),
    "duplicate-key": (b"devices: {}\ndevices: {}\n", ":2: `devices` is given twice; keep one"),
    "duplicate-device-field": (
        b"devices:\n  A4:C1:38:AA:BB:CC: {name: a, name: b}\n",
        ":2: device A4:C1:38:AA:BB:CC: `name` is given twice",
    ),
    "unknown-key": (b"scan_intervall_seconds: 3\n", ":1: unknown key `scan_intervall_seconds`; did you mean"),
    "unknown-device-key": (b"devices:\n  A4:C1:38:AA:BB:CC: {name: a, colour: red}\n", "unknown key `colour`"),
    "key-is-a-list": (b"[a, b]: 1\n", ":1: a key must be a name like listen_port, not a list or mapping"),
    "key-is-a-mapping": (b"? {a: 1}\n: 2\n", ":1: a key must be a name"),
    "root-is-a-list": (b"- a\n- b\n", ":1: the file must be a mapping"),
    "root-is-a-number": (b"42\n", ":1: the file must be a mapping"),
    "non-utf8": (b"devices:\n  A4:C1:38:AA:BB:CC: caf\xe9\n", ":2: not UTF-8 text; save the file as UTF-8"),
    "utf16": ("listen_port: 1\n".encode("utf-16"), ":1: not UTF-8 text"),
    "binary": (random.Random(6).randbytes(4096), ": not UTF-8 text"),
    "nul-byte": (b"listen_port: 1\x00\n", ":1: not valid YAML: unacceptable character #x0000"),
    "control-character": (b'listen_port: 1\nadapter: "\x07"\n', ":2: not valid YAML: unacceptable character #x0007"),
    "nul-escape-in-path": (b'log_file: "/tmp/a\\0b"\n', ":1: `log_file` contains a NUL character"),
    "ten-megabytes": (b"# " + b"x" * (10 * 1024 * 1024) + b"\n", ": larger than 1024 KiB"),
    "tabs": (b"devices:\n\t'A4:C1:38:AA:BB:CC': x\n", ":2: not valid YAML: found character '\\t'"),
    "unclosed-bracket": (b"devices: [\n", "not valid YAML"),
    "billion-laughs": (BILLION_LAUGHS.encode(), ":1: `devices` must be a mapping"),
    "recursive-alias": (b"devices: &a [*a]\n", ":1: `devices` must be a mapping"),
    "recursive-alias-mapping": (b"devices: &a {x: *a}\n", ":1: `x` is not a MAC address"),
    "recursive-alias-key": (b"&a [*a]: 1\n", ":1: a key must be a name"),
    "undefined-alias": (
        b"listen_port: *nope\n",
        ":1: not valid YAML: `*` starts a YAML alias; put the value in quotes",
    ),
    "merge-key": (b"base: &b {listen_port: 1}\n<<: *b\n", ":2: unknown key `<<`"),
    "deeply-nested-lists": (b"devices: " + b"[" * DEEP + b"]" * DEEP + b"\n", ": not valid YAML: nested too deeply"),
    "deeply-nested-maps": (
        b"devices: " + b"{a: " * DEEP + b"1" + b"}" * DEEP + b"\n",
        ": not valid YAML: nested too deeply",
    ),
    "huge-integer-port": (
        b"listen_port: " + b"9" * 5000 + b"\n",
        ":1: `listen_port` must be a whole number, not `9999",
    ),
    "huge-integer-interval": (b"scan_interval_seconds: 1" + b"0" * 400 + b"\n", "must be a finite number of seconds"),
    "huge-integer-watchdog": (b"watchdog_silent_scans: " + b"9" * 5000 + b"\n", "`watchdog_silent_scans` must be"),
    "nan-interval": (b"scan_interval_seconds: .nan\n", ":1: `scan_interval_seconds` must be a finite number"),
    "inf-interval": (b"scan_interval_seconds: .inf\n", ":1: `scan_interval_seconds` must be a finite number"),
    "inf-duration": (b"scan_duration_seconds: .inf\n", ":1: `scan_duration_seconds` must be a finite number"),
    "negative-inf-duration": (b"scan_duration_seconds: -.inf\n", "must be a finite number"),
    "duration-over-interval": (b"scan_interval_seconds: 2\nscan_duration_seconds: 3\n", ":2: scan_duration_seconds"),
    "python-tag": (b"listen_port: !!python/object/apply:os.system [echo hi]\n", ":1: `listen_port` must be a single"),
    "two-documents": (b"listen_port: 1\n---\nlisten_port: 2\n", ":2: not valid YAML: a second document (`---`)"),
    "bad-bindkey": (b"devices:\n  A4:C1:38:AA:BB:CC: {name: a, bindkey: 12}\n", "bindkey must be 32 hex characters"),
    "empty-name": (b"devices:\n  A4:C1:38:AA:BB:CC: ''\n", "has an empty name"),
    "scan-mode-long": (b"scan_mode: " + b"x" * 10_000 + b"\n", "scan_mode `xxxx"),
}
LINE = re.compile(r"^ble-exporter: error: (?P<path>[^:]+)(:\d+)?: \S.*$")


def timed_cli(*args: str, prefix: Sequence[str] = ()) -> tuple[int, str, str, float]:
    """`run_cli`, with the seconds it took; a broken file's bytes come back as replacement characters."""
    began = time.monotonic()
    result = run_cli(*args, prefix=prefix, errors="replace")
    return result.returncode, result.stdout, result.stderr, time.monotonic() - began


def assert_rejected(
    path: Path, expected: str, *args: str, prefix: Sequence[str] = (), command: str = "check-config"
) -> None:
    status, out, err, seconds = timed_cli(command, "--config", str(path), *args, prefix=prefix)
    assert (status, out) == (2, ""), err
    lines = err.splitlines()
    assert lines and "Traceback" not in err
    for line in lines:
        match = LINE.match(line)
        assert match and match["path"] == str(path), line
        assert len(line) < 400, line  # one readable line, whatever the file held
    assert any(expected in line for line in lines), lines
    # Not a speed target (the benchmarks have those): a bomb that expands or recurses would take minutes.
    assert seconds < 20.0, seconds


@pytest.mark.parametrize("case", BROKEN)
def test_broken_config_exits_2_with_one_line_per_problem(tmp_path: Path, case: str) -> None:
    content, expected = BROKEN[case]
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert_rejected(config, expected)


def test_a_directory_instead_of_the_file(tmp_path: Path) -> None:
    assert_rejected(tmp_path, ": is a directory, not a config file")


def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    status, out, err, seconds = timed_cli("check-config", "--config", str(fifo))
    assert (status, err) == (0, "") and "OK: 0 devices" in out and seconds < 20.0  # read as empty: the defaults


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# devices: {}\n"])
def test_an_empty_config_is_all_defaults(text: str) -> None:
    """Every key is optional, as the README says, so a file with none is valid."""
    assert parse_config(text, "c.yaml") == Config(path="c.yaml")


def test_several_problems_come_in_line_order() -> None:
    found = problems("foo: 1\nlisten_port: 0\nadapter: x\ndevices:\n  nope: a\nscan_mode: q\nlisten_port: 3\n")
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines) == [1, 2, 3, 5, 6, 7], found


def test_real_scans_have_a_minimum_duration_and_interval() -> None:
    """Sub-second scans are valid YAML but not a real scan: `run`, `watch` and `check-config` refuse
    them (radio_problems); --simulate may use them, to compress time in tests and soaks."""
    cfg = parse_config("scan_interval_seconds: 0.5\nscan_duration_seconds: 0.01\n", "c.yaml")
    found = radio_problems(cfg)
    assert [p.split(":")[1] for p in found] == ["1", "2"]
    assert "scan_duration_seconds 0.01 is below 1 s" in found[1] and "use at least 1" in found[1]
    assert radio_problems(parse_config("scan_interval_seconds: 1\nscan_duration_seconds: 1\n", "c.yaml")) == []


def test_a_file_that_fails_to_read(tmp_path: Path) -> None:
    assert_rejected(Path("/proc/self/mem"), ": cannot be read (Input/output error); check its permissions")


def test_a_file_without_read_permission(tmp_path: Path) -> None:
    # root reads any file: as root, the check runs without the capabilities that let it (CAP_DAC_*).
    caps = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"] if os.geteuid() == 0 else []
    config = tmp_path / "config.yaml"
    config.write_text("devices: {}\n")
    config.chmod(0)
    assert_rejected(config, ": cannot be read (Permission denied); check its permissions", prefix=prefix)


@pytest.mark.parametrize("case", ["ten-megabytes", "billion-laughs", "deeply-nested-lists", "nan-interval", "tabs"])
def test_run_rejects_broken_configs_the_same_way(tmp_path: Path, case: str) -> None:
    content, expected = BROKEN[case]
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert_rejected(config, expected, "--simulate", "--log-file", str(tmp_path / "x.log"), command="run")
    assert not (tmp_path / "x.log").exists()


MAN_PAGE = REPO / "debian" / "ble-exporter.1"


def man_key_list() -> str:
    """The man page's CONFIGURATION key list, made from the config's table of keys."""

    def roff(text: str) -> str:
        return text.replace("\\", "\\e").replace("-", "\\-")

    out = []
    defaults = Config()
    for name, key in KEYS.items():
        default = getattr(defaults, name)
        shown = key.shown_default or (f"{default:g}" if isinstance(default, float) else str(default))
        out += [".TP", f".B {roff(name)}", roff(f"{key.help} Default: {shown}.")]
    return "\n".join(out) + "\n"


def test_the_man_page_lists_every_key_as_the_table_says(update_golden: bool) -> None:
    page = MAN_PAGE.read_text()
    begin = page.index("\n", page.index('.\\" BEGIN KEYS')) + 1
    end = page.index('.\\" END KEYS')
    if update_golden:
        MAN_PAGE.write_text(page[:begin] + man_key_list() + page[end:])
        page = MAN_PAGE.read_text()
        end = page.index('.\\" END KEYS')
    assert page[begin:end] == man_key_list()


def test_adapter_takes_one_name_or_address_or_a_list_as_written() -> None:
    assert parse_config("").adapter == ("hci0",)
    assert parse_config("adapter: hci1\n").adapter == ("hci1",)
    # Unquoted digits and colons are a YAML 1.1 sexagesimal number; the address is taken as written.
    both = parse_config("adapter: [hci0, 11:22:33:44:55:66]\n")
    assert both.adapter == ("hci0", "11:22:33:44:55:66") and both.adapters_shown == "hci0, 11:22:33:44:55:66"
    assert parse_config("adapter:\n  - 00:1a:7d:da:71:13\n").adapter == ("00:1A:7D:DA:71:13",)


def test_every_key_has_a_type_help_and_a_valid_default() -> None:
    defaults = Config()
    assert list(KEYS) == [
        "scan_interval_seconds",
        "scan_duration_seconds",
        "log_file",
        "listen_address",
        "listen_port",
        "adapter",
        "scan_mode",
        "watchdog_silent_scans",
        "adapter_reset_after_silent_scans",
        "web_config_file",
        "live_page",
        "devices",
    ]
    for name, key in KEYS.items():
        assert key.types and key.described and key.help.endswith("."), name
        default = getattr(defaults, name)
        if key.check is not None and default is not None:
            assert key.check(default) is None, name
