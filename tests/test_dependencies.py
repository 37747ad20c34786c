"""One dependency list (packaging/dependencies.txt): what reads it (setup.py, the Makefile, .ci/run,
packaging/in-root.sh and pinned.sh through packaging/deps.py) takes it from there; every other place
that names the dependencies is checked against it here (stdeb.cfg, requirements-dev.txt,
bench/requirements.txt, systemtest/packages.txt, the README's table). The .deb's Depends must be
met by the versions each supported release ships (Debian 12, 13, forky; Ubuntu 24.04, 26.04): a new
minimum that one of them cannot meet fails here, and `make lint-deb` checks the built .deb the same way."""

from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import re
import runpy
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_deps() -> Any:
    spec = importlib.util.spec_from_file_location("ble_exporter_deps", REPO / "packaging" / "deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


deps = _load_deps()
DEPS = deps.load()
RUNTIME = DEPS.of_kind("runtime")
# What stdeb (Depends3) and dh-python (python3:any from X-Python3-Version) put in the .deb's Depends.
BUILT_DEPENDS = (
    "systemd | systemd-standalone-sysusers | systemd-sysusers, "
    + ", ".join(DEPS.depends())
    + f", python3:any (>= {DEPS.row('python3').minimum}~)"
)


def requirement_names(path: Path) -> set[str]:
    names = set()
    for text in path.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            names.add(pypi(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]))
    return names


def pypi(name: str) -> str:
    return name.lower().replace("_", "-")


def test_the_releases_and_the_kinds_of_the_list() -> None:
    assert DEPS.releases == ("bookworm", "trixie", "forky", "noble", "resolute")
    assert [r.debian for r in RUNTIME] == [
        "bluez",
        "python3-bleak",
        "python3-prometheus-client",
        "python3-yaml",
        "python3-aiohttp",
        "python3-rich",
        "python3-cryptography",
        "python3-bcrypt",
    ]
    assert DEPS.row("python3").kind == "platform" and DEPS.row("python3-dbus-fast").kind == "via"


def test_every_supported_release_meets_every_minimum() -> None:
    assert deps.release_problems(DEPS) == []
    assert deps.depends_problems(BUILT_DEPENDS, DEPS) == []


def with_minimum(debian: str, minimum: str) -> Any:
    rows = tuple(dataclasses.replace(r, minimum=minimum) if r.debian == debian else r for r in DEPS.rows)
    return dataclasses.replace(DEPS, rows=rows)


def test_a_new_minimum_that_a_release_cannot_meet_fails() -> None:
    raised = with_minimum("python3-bleak", "0.21")
    assert deps.release_problems(raised) == ["python3-bleak >= 0.21: bookworm ships 0.20.2"]
    python = with_minimum("python3", "3.12")
    assert deps.release_problems(python) == ["python3 >= 3.12: bookworm ships 3.11.2"]
    # the .deb as it would be built then, against every release's versions
    newer_aiohttp = BUILT_DEPENDS.replace("python3-aiohttp (>= 3.8)", "python3-aiohttp (>= 3.10)")
    assert deps.depends_problems(newer_aiohttp, DEPS) == [
        "Depends: python3-aiohttp (>= 3.10) is not met by bookworm (python3-aiohttp 3.8.4)",
        "Depends: python3-aiohttp (>= 3.10) is not met by noble (python3-aiohttp 3.9.1)",
        "Depends: python3-aiohttp (>= 3.10), dependencies.txt says >= 3.8",
    ]
    newer_python = BUILT_DEPENDS.replace("python3:any (>= 3.10~)", "python3:any (>= 3.13~)")
    assert deps.depends_problems(newer_python, DEPS) == [
        "Depends: python3:any (>= 3.13~) is not met by bookworm (python3 3.11.2)",
        "Depends: python3:any (>= 3.13~) is not met by noble (python3 3.12.3)",
    ]


def test_a_depends_that_leaves_out_or_adds_a_package_fails() -> None:
    without_bcrypt = BUILT_DEPENDS.replace("python3-bcrypt (>= 3.2), ", "")
    assert deps.depends_problems(without_bcrypt, DEPS) == [
        "Depends: python3-bcrypt is missing; dependencies.txt names it as a runtime dependency"
    ]
    assert deps.depends_problems(BUILT_DEPENDS + ", python3-serial", DEPS) == [
        "Depends: python3-serial names no package of dependencies.txt; add it there"
    ]


def test_stdeb_cfg_says_what_the_list_says() -> None:
    """stdeb reads its own file: Depends3 and X-Python3-Version (from which dh-python writes python3:any)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "stdeb.cfg")
    depends = [d.strip() for d in cfg["DEFAULT"]["Depends3"].split(",")]
    assert depends == DEPS.depends(), f"stdeb.cfg's Depends3 should be:\n  {DEPS.stdeb_depends()}"
    assert cfg["DEFAULT"]["X-Python3-Version"] == f">= {DEPS.row('python3').minimum}"


def test_setup_py_takes_its_requirements_from_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    fake = types.ModuleType("setuptools")
    fake.setup = lambda **kwargs: seen.update(kwargs)  # type: ignore[attr-defined]
    fake.find_packages = lambda **kwargs: ["ble_exporter"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "setuptools", fake)  # (Python 3.12's venvs have no setuptools)
    runpy.run_path(str(REPO / "setup.py"))
    assert seen["install_requires"] == [
        "bleak>=0.20",
        "prometheus_client>=0.16",
        "PyYAML>=6.0",
        "aiohttp>=3.8",
        "rich>=13.3",
        "cryptography>=38",
        "bcrypt>=3.2",
    ]
    assert seen["python_requires"] == ">=3.10"
    manifest = (REPO / "MANIFEST.in").read_text()
    assert "packaging/dependencies.txt" in manifest and "packaging/deps.py" in manifest  # for the sdist's setup.py


def test_requirements_dev_has_the_lists_test_tools_and_no_runtime_package() -> None:
    lines = [line.strip() for line in (REPO / "requirements-dev.txt").read_text().splitlines()]
    for requirement in DEPS.test_requirements():
        assert requirement in lines
    runtime = {pypi(r.pypi) for r in DEPS.of_kind("runtime", "via") if r.pypi}
    assert not requirement_names(REPO / "requirements-dev.txt") & runtime  # setup.py brings those


def test_the_benchmark_tools_are_no_dependency_of_the_package() -> None:
    listed = {pypi(r.pypi) for r in DEPS.rows if r.pypi}
    assert requirement_names(REPO / "bench" / "requirements.txt").isdisjoint(listed)


def test_the_system_test_guest_has_what_the_deb_depends_on() -> None:
    """The guest installs the .deb with no network: the image must hold every runtime package."""
    text = (REPO / "systemtest" / "packages.txt").read_text()
    packages = {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}
    assert {"python3", *(r.debian for r in RUNTIME)} <= packages


@pytest.mark.parametrize(
    "path", [".ci/run", "Makefile", "packaging/in-root.sh", "packaging/pinned.sh", "packaging/deb-test.sh"]
)
def test_no_script_keeps_a_copy_of_the_list(path: str) -> None:
    text = (REPO / path).read_text()
    named = [r.debian for r in RUNTIME if r.debian.startswith("python3-") and re.search(rf"\b{r.debian}\b", text)]
    assert len(named) <= 1, f"{path} names {named}: take them from packaging/deps.py"


def test_the_readme_table_gives_each_releases_python_bleak_and_bluez() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Supported systems") :]
    rows = {
        "bookworm": "| Debian 12 ",
        "trixie": "| Debian 13 ",
        "forky": "| Debian forky ",
        "noble": "| Ubuntu Server 24.04 ",
        "resolute": "| Ubuntu Server 26.04 ",
    }
    assert set(rows) == set(DEPS.releases)
    for release, start in rows.items():
        [line] = [line for line in table.splitlines() if line.startswith(start)]
        python, bleak, bluez = (v.strip() for v in line.split("|")[3].split(",")[:3])
        versions = {r.debian: r.versions[release] for r in DEPS.rows}
        assert python == ".".join(versions["python3"].split(".")[:2]), release
        assert bleak == versions["python3-bleak"], release
        assert bluez == versions["bluez"], release


def test_pins_and_requirements() -> None:
    assert DEPS.pins("noble") == [
        "bleak==0.21.1",
        "dbus-fast==2.21.1",
        "prometheus_client==0.19.0",
        "PyYAML==6.0.1",
        "aiohttp==3.9.1",
        "rich==13.7.1",
        "cryptography==41.0.7",
        "bcrypt==3.2.2",
    ]
    with pytest.raises(deps.DependencyError, match="no release 'jammy'"):
        DEPS.pins("jammy")
    assert DEPS.debs(["test-debian-only"]) == ["python3-dbusmock", "dbus", "prometheus", "tmux"]


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [("1:0.21.1+ds1-1~deb13u1", "0.21.1"), ("3.14.7-3", "3.14.7"), ("257.13-1~deb13u1", "257.13"), ("6.0", "6.0")],
)
def test_the_upstream_part_of_a_debian_version(debian: str, upstream: str) -> None:
    assert deps.upstream(debian) == upstream


def test_versions_compare_by_number() -> None:
    assert deps.satisfies("0.22.3", ">=", "0.20") and not deps.satisfies("0.20.2", ">=", "0.21")
    assert deps.satisfies("3.10", ">=", "3.10~") and deps.satisfies("13.10", ">>", "13.9.4")
    assert deps.same_release_version("257", "257.13-1~deb13u1") and not deps.same_release_version("3.13.5", "3.13.50")


def test_a_list_of_a_release_against_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    """`deps.py check-archive RELEASE` (before each Debian suite, in the release's tree)."""
    policy = "".join(
        f"{r.debian}:\n  Installed: (none)\n  Candidate: {r.versions['trixie']}-1\n  Version table:\n"
        for r in DEPS.of_kind("runtime", "via", "platform")
        if r.debian != "python3-bleak"
    )
    policy += "python3-bleak:\n  Installed: 0.22.3-1\n  Candidate: 1.1.1-1\n"

    def fake_run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, policy, "")

    monkeypatch.setattr(deps.subprocess, "run", fake_run)
    assert deps.archive_problems("trixie", DEPS) == [
        "python3-bleak: trixie ships 1.1.1-1, dependencies.txt says 0.22.3; correct the list "
        "(and check the minimums and the README's table)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runtime python3-x x 1 1 1 1 1 1\n", "a row before the header line"),
        ("# kind debian pypi minimum a b\nruntime python3-x x 1 1\n", "5 columns, the header has 6"),
        ("# kind debian pypi minimum a\nlibrary python3-x x 1 1\n", "kind 'library' is none of"),
        ("# kind debian pypi minimum a\nruntime python3-x x 1 one\n", "'one' is not a version"),
        ("# kind debian pypi minimum a\ntest python3-x x 1 1\n", "a test tool has * for every release"),
    ],
)
def test_a_malformed_list_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dependencies.txt"
    path.write_text(text)
    with pytest.raises(deps.DependencyError, match=re.escape(message)):
        deps.load(path)
