"""Config loading and validation: every rule gives a one-line `path:line: problem; fix`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ble_exporter.config import Config, ConfigError, Device, load_config, normalise_mac, parse_config

REPO = Path(__file__).resolve().parent.parent
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


def test_spec_example_config() -> None:
    cfg = parse_config(
        """
scan_interval_seconds: 30
scan_duration_seconds: 5
log_file: "./logs/ble_exporter.log"
listen_port: 8000
devices:
  "A4:C1:38:AA:BB:CC": "living_room"
  "a4-c1-38-dd-ee-ff": "bedroom"
""",
        "c.yaml",
    )
    assert cfg.devices == (Device("A4:C1:38:AA:BB:CC", "living_room"), Device("A4:C1:38:DD:EE:FF", "bedroom"))
    assert cfg.log_file == "./logs/ble_exporter.log"
    assert cfg.where("listen_port") == "c.yaml:5"


def test_unquoted_digit_mac_and_yaml_keywords_are_taken_as_written() -> None:
    # YAML 1.1 would read 11:22:33:44:55:66 as a sexagesimal integer and `yes` as True.
    cfg = parse_config("devices:\n  11:22:33:44:55:66: yes\n", "c.yaml")
    assert cfg.devices == (Device("11:22:33:44:55:66", "yes"),)


def test_device_with_bindkey() -> None:
    cfg = parse_config(f"devices:\n  A4:C1:38:AA:BB:CC: {{name: shed, bindkey: {KEY.upper()}}}\n", "c.yaml")
    assert cfg.devices[0].bindkey == bytes.fromhex(KEY)
    assert KEY not in repr(cfg) and KEY.upper() not in repr(cfg)


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
        ("devices:\n  A4:C1:38:AA:BB:CC: [a]\n", "the name must be text"),
        ("listen_port: 1\nlisten_port: 2\n", "c.yaml:2: `listen_port` is given twice"),
        ("", "the file is empty"),
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
