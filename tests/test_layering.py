"""Import direction: no cycles, the core never pulls in a front end, and the daemon never loads rich."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ble_exporter"
HEAVY = ("bleak", "aiohttp", "rich", "prometheus_client")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text, lazy imports in functions and
    TYPE_CHECKING blocks included: a cycle through a lazy import is still a cycle in the design."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:  # from .parser import ...
                    edges.add(node.module or "")
                elif node.module == "ble_exporter":  # from ble_exporter import sdnotify
                    edges.update(alias.name for alias in node.names)
                elif node.module and node.module.startswith("ble_exporter."):
                    edges.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                edges.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ble_exporter."))
        graph[name] = {e for e in edges if (PACKAGE / f"{e}.py").exists()} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_no_module_imports_another_in_a_cycle() -> None:
    graph = import_graph()
    assert {"parser", "engine", "core", "bluez", "simulator", "main"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(
    "module", ["parser", "devices", "calibration", "engine", "reception", "config", "scanner", "health", "core"]
)
def test_core_imports_no_io_library(module: str) -> None:
    assert loaded_after(f"import ble_exporter.{module}").isdisjoint(HEAVY)


def test_the_engine_does_not_load_yaml() -> None:
    assert "yaml" not in loaded_after("import ble_exporter.engine")


def test_the_scan_core_does_not_import_the_http_layer() -> None:
    loaded = loaded_after("import ble_exporter.core, ble_exporter.bluez, ble_exporter.simulator")
    assert "ble_exporter.exporter" not in loaded and "ble_exporter.documents" not in loaded
    assert loaded.isdisjoint(HEAVY)  # bleak is imported only when a real scan starts


def test_the_daemon_does_not_load_rich() -> None:
    loaded = loaded_after("import ble_exporter.main, ble_exporter.exporter, ble_exporter.documents, ble_exporter.page")
    assert "rich" not in loaded and "ble_exporter.watch" not in loaded


def test_the_daemon_loads_what_only_a_mistake_an_eviction_a_web_config_or_the_page_needs_when_it_happens(
    tmp_path: Path,
) -> None:
    """Each module's names grow CPython's table of interned strings, which doubles (by 0.5 MB) past
    21,845 entries; a daemon with 100 simulated sensors was just past that with these (bench/results.md)."""
    config = tmp_path / "config.yaml"
    config.write_text("devices: {}\n")
    loaded = loaded_after(
        "from ble_exporter.config import load_config; from ble_exporter.daemon import Daemon; "
        f"Daemon(load_config({str(config)!r}), simulate=True, log_file_option=None, log_level=20)._app()"
    )
    assert "ble_exporter.exporter" in loaded and "ble_exporter.documents" in loaded
    assert loaded.isdisjoint({"termios", "difflib", "ble_exporter.webconfig", "ble_exporter.page"})
