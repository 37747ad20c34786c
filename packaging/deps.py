#!/usr/bin/env python3
"""The dependency list (packaging/dependencies.txt) for its readers: setup.py, the Makefile,
.ci/run, packaging/in-root.sh, packaging/pinned.sh and the tests. Standard library only, Python 3.10.

    deps.py debs SELECTION...       Debian package names, one line, in the list's order; SELECTION:
                                    python3, runtime, runtime-python (its python3-* packages), test,
                                    test-debian-only (the test tools with no PyPI name)
    deps.py pip RELEASE             the PyPI versions of RELEASE (runtime and via rows), as pins
    deps.py version RELEASE PACKAGE the version of PACKAGE that RELEASE ships
    deps.py pip-test                the test tools from PyPI, as requirements (requirements-dev.txt's)
    deps.py stdeb-depends           what stdeb.cfg's Depends3 must say
    deps.py check-deb DEB           the .deb's Depends: exactly the list's runtime packages and
                                    minimums, and met by every supported release
    deps.py check-archive RELEASE   RELEASE's versions in the list against apt (in its tree or host)
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).with_name("dependencies.txt")
KINDS = ("runtime", "via", "platform", "test")
_VERSION = re.compile(r"\d+(\.\d+)*")
_RELATION = re.compile(r"^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?\s*(?:\((<<|<=|=|>=|>>)\s*([^)\s]+)\))?$")


class DependencyError(Exception):
    """A malformed list, or a place that disagrees with it; the message is one line."""


@dataclass(frozen=True)
class Row:
    kind: str
    debian: str
    pypi: str | None
    minimum: str | None
    versions: dict[str, str | None]  # release -> upstream version (None: not recorded)


@dataclass(frozen=True)
class Dependencies:
    releases: tuple[str, ...]
    rows: tuple[Row, ...]

    def row(self, debian: str) -> Row:
        for row in self.rows:
            if row.debian == debian:
                return row
        raise DependencyError(f"{debian} is not in {LIST.name}")

    def of_kind(self, *kinds: str) -> list[Row]:
        return [r for r in self.rows if r.kind in kinds]

    def install_requires(self) -> list[str]:
        return [f"{r.pypi}>={r.minimum}" if r.minimum else r.pypi for r in self.of_kind("runtime") if r.pypi]

    def python_requires(self) -> str:
        return f">={self.row('python3').minimum}"

    def depends(self) -> list[str]:
        """The .deb's own Depends (stdeb adds ${misc:Depends} and ${python3:Depends})."""
        return [f"{r.debian} (>= {r.minimum})" if r.minimum else r.debian for r in self.of_kind("runtime")]

    def stdeb_depends(self) -> str:
        return ",\n  ".join(self.depends())

    def debs(self, selection: list[str]) -> list[str]:
        picked: list[str] = []
        for row in self.rows:
            if any(_selected(row, s) for s in selection):
                picked.append(row.debian)
        return picked

    def test_requirements(self) -> list[str]:
        return [f"{r.pypi}>={r.minimum}" if r.minimum else r.pypi for r in self.of_kind("test") if r.pypi]

    def pins(self, release: str) -> list[str]:
        if release not in self.releases:
            raise DependencyError(f"no release {release!r} in {LIST.name}; it has: {' '.join(self.releases)}")
        pins = []
        for row in self.of_kind("runtime", "via"):
            version = row.versions[release]
            if row.pypi and version:
                pins.append(f"{row.pypi}=={version}")
        return pins


_SELECTIONS = ("python3", "runtime", "runtime-python", "test", "test-debian-only")


def _selected(row: Row, selection: str) -> bool:
    if selection not in _SELECTIONS:
        raise DependencyError(f"unknown selection {selection!r}; use one of: {' '.join(_SELECTIONS)}")
    return (
        (selection == "python3" and row.debian == "python3")
        or (selection == "runtime" and row.kind == "runtime")
        or (selection == "runtime-python" and row.kind == "runtime" and row.debian.startswith("python3-"))
        or (selection == "test" and row.kind == "test")
        or (selection == "test-debian-only" and row.kind == "test" and row.pypi is None)
    )


def load(path: Path = LIST) -> Dependencies:
    releases: tuple[str, ...] = ()
    rows: list[Row] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        if line.startswith("# kind "):
            releases = tuple(line.split()[5:])
            continue
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if not releases:
            raise DependencyError(f"{where}: a row before the header line `# kind debian pypi minimum RELEASE...`")
        if len(fields) != 4 + len(releases):
            raise DependencyError(f"{where}: {len(fields)} columns, the header has {4 + len(releases)}")
        kind, debian, pypi, minimum, *versions = fields
        if kind not in KINDS:
            raise DependencyError(f"{where}: kind {kind!r} is none of {' '.join(KINDS)}")
        for version in (minimum, *versions):
            if version not in ("-", "*") and not _VERSION.fullmatch(version):
                raise DependencyError(f"{where}: {version!r} is not a version like 1.2.3")
        if (kind == "test") != all(v == "*" for v in versions):
            raise DependencyError(f"{where}: a test tool has * for every release, any other row a version")
        rows.append(
            Row(
                kind=kind,
                debian=debian,
                pypi=None if pypi == "-" else pypi,
                minimum=None if minimum == "-" else minimum,
                versions={r: None if v in ("-", "*") else v for r, v in zip(releases, versions, strict=True)},
            )
        )
    if not rows:
        raise DependencyError(f"{path.name}: no rows")
    return Dependencies(releases, tuple(rows))


# --- versions -----------------------------------------------------------------------------------


def upstream(debian_version: str) -> str:
    """The upstream part of a Debian version: 1:0.21.1+ds1-1~deb13u1 -> 0.21.1."""
    version = debian_version.split(":", 1)[-1]
    if "-" in version:
        version = version.rsplit("-", 1)[0]
    return re.split(r"[+~]", version, maxsplit=1)[0]


def key(version: str) -> tuple[int, ...]:
    match = _VERSION.match(upstream(version))
    if not match:
        raise DependencyError(f"{version!r} is not a version like 1.2.3")
    return tuple(int(p) for p in match.group(0).split("."))


def same_release_version(recorded: str, actual: str) -> bool:
    """A recorded 257 matches apt's 257.13; 3.13.5 matches 3.13.5 only."""
    a = upstream(actual)
    return a == recorded or a.startswith(recorded + ".")


def satisfies(version: str, op: str, wanted: str) -> bool:
    have, want = key(version), key(wanted)
    return {
        ">=": have >= want,
        ">>": have > want,
        "<=": have <= want,
        "<<": have < want,
        "=": have == want,
    }[op]


# --- the .deb's Depends ---------------------------------------------------------------------------


def depends_problems(depends: str, deps: Dependencies) -> list[str]:
    """What is wrong with a .deb's Depends field: a runtime package missing or with another minimum, a
    package the list does not know, a release whose version does not meet a relation."""
    problems: list[str] = []
    first: dict[str, tuple[str | None, str | None]] = {}
    for entry in (e.strip() for e in depends.split(",")):
        if not entry:
            continue
        alternatives = []
        for alternative in (a.strip() for a in entry.split("|")):
            m = _RELATION.match(alternative)
            if not m:
                problems.append(f"Depends: cannot read {alternative!r}")
                break
            alternatives.append((m.group(1), m.group(2), m.group(3)))
        else:
            name, op, wanted = alternatives[0]
            first[name] = (op, wanted)
            known = [a for a in alternatives if any(r.debian == a[0] for r in deps.rows)]
            if not known:
                problems.append(f"Depends: {entry} names no package of {LIST.name}; add it there")
                continue
            for release in deps.releases:
                if not any(_met(deps.row(n), release, op, w) for n, op, w in known):
                    problems.append(f"Depends: {entry} is not met by {release} ({_shipped(deps, known, release)})")
    for row in deps.of_kind("runtime"):
        if row.debian not in first:
            problems.append(f"Depends: {row.debian} is missing; {LIST.name} names it as a runtime dependency")
        elif first[row.debian] != ((">=", row.minimum) if row.minimum else (None, None)):
            op, wanted = first[row.debian]
            said = f"({op} {wanted})" if op else "no version"
            problems.append(f"Depends: {row.debian} {said}, {LIST.name} says >= {row.minimum or 'any'}")
    return problems


def _met(row: Row, release: str, op: str | None, wanted: str | None) -> bool:
    version = row.versions.get(release)
    if row.kind == "test" or version is None:
        return False
    return op is None or wanted is None or satisfies(version, op, wanted)


def _shipped(deps: Dependencies, alternatives: list[tuple[str, str | None, str | None]], release: str) -> str:
    return ", ".join(f"{n} {deps.row(n).versions.get(release) or 'not packaged'}" for n, _, _ in alternatives)


def release_problems(deps: Dependencies) -> list[str]:
    """Each release against each minimum: a release that cannot meet one cannot install the .deb."""
    problems = []
    for row in deps.of_kind("runtime", "platform"):
        for release in deps.releases:
            version = row.versions[release]
            if version is None:
                problems.append(f"{row.debian}: {release} does not ship it")
            elif row.minimum and not satisfies(version, ">=", row.minimum):
                problems.append(f"{row.debian} >= {row.minimum}: {release} ships {version}")
    return problems


# --- against apt ---------------------------------------------------------------------------------


def archive_problems(release: str, deps: Dependencies) -> list[str]:
    """The list's versions of RELEASE against apt's candidates here (run inside RELEASE's tree)."""
    if release not in deps.releases:
        raise DependencyError(f"no release {release!r} in {LIST.name}; it has: {' '.join(deps.releases)}")
    rows = [r for r in deps.of_kind("runtime", "via", "platform") if r.versions[release]]
    out = subprocess.run(
        ["apt-cache", "policy", *(r.debian for r in rows)],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    ).stdout
    candidates = dict(re.findall(r"^(\S+):\n(?:\s+Installed: .*\n)?\s+Candidate: (\S+)", out, re.MULTILINE))
    problems = []
    for row in rows:
        recorded = row.versions[release]
        actual = candidates.get(row.debian, "(none)")
        if recorded and (actual == "(none)" or not same_release_version(recorded, actual)):
            problems.append(
                f"{row.debian}: {release} ships {actual}, {LIST.name} says {recorded}; correct the list "
                "(and check the minimums and the README's table)"
            )
    return problems


# --- command line ----------------------------------------------------------------------------------


def _report(problems: list[str], ok: str) -> int:
    """Each problem on stderr and status 1, or the one line saying all is well and 0."""
    for p in problems:
        print(f"deps: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"deps: {ok}")
    return 0


def main(argv: list[str]) -> int:
    deps = load()
    match argv:
        case ["debs", *selection] if selection:
            print(" ".join(deps.debs(selection)))
        case ["pip", release]:
            print("\n".join(deps.pins(release)))
        case ["version", release, debian]:
            version = deps.row(debian).versions.get(release)
            if version is None:
                raise DependencyError(f"{LIST.name} records no version of {debian} for {release!r}")
            print(version)
        case ["pip-test"]:
            print("\n".join(deps.test_requirements()))
        case ["stdeb-depends"]:
            print(deps.stdeb_depends())
        case ["check-deb", deb]:
            field = subprocess.run(
                ["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True, check=True
            ).stdout.strip()
            ok = f"{Path(deb).name}: Depends as {LIST.name} says, met by {', '.join(deps.releases)}"
            return _report([f"{deb}: {p}" for p in depends_problems(field, deps)], ok)
        case ["check-archive", release]:
            return _report(archive_problems(release, deps), f"{release} ships the versions {LIST.name} records")
        case _:
            print((__doc__ or "").strip(), file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DependencyError as e:
        print(f"deps: {e}", file=sys.stderr)
        sys.exit(1)
