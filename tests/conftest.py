"""Shared fixtures: real daemons on temp folders, with their logs printed on failure."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import NovaProcess, short_tmpdir

NOTES = {
    "garden/tomatoes.md": (
        "---\ntitle: Growing tomatoes\ntags: [garden, summer]\ndate: 2024-05-01\n---\n"
        "# Growing tomatoes\n\nTomatoes need six hours of direct sunlight and deep watering "
        "twice a week. Pinch the suckers that grow between stem and branch. #vegetables\n\n"
        "## Pests\n\nHornworms eat the leaves at night; pick them off by hand.\n"
    ),
    "garden/compost.md": (
        "# Compost\n\nMix green kitchen scraps with brown dry leaves, keep the heap damp like "
        "a wrung-out sponge, and turn it every two weeks.\n"
    ),
    "git/undo.md": (
        "# Undo a commit\n\nTo undo the last commit but keep its changes staged, run "
        "`git reset --soft HEAD~1`. To throw the changes away use `git reset --hard`.\n"
    ),
    "cooking/bread.txt": (
        "Sourdough bread\n\nFeed the starter the night before. The dough rises slowly in a "
        "cold fridge for a deeper, tangier flavour.\n"
    ),
    "empty.md": "",
    "odd-front-matter.md": (
        '---\ntitle: ""\ndate: 2024-01-05\ntags: [alpha, beta]\ndraft:\nauthor: {name: X}\n'
        "rating: 4.5\nid: 123456789012345678901234\n---\n"
        "Front matter of every YAML type still lets the marmalade recipe be indexed.\n"
    ),
}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def write_notes(root: Path, notes: dict[str, str | bytes]) -> None:
    """Write each note (text or raw bytes) under ``root``."""
    for rel, content in notes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.fixture
def home() -> Iterator[Path]:
    """A short temp dir for one test's daemons: state, socket and source live here."""
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_notes(home: Path) -> Path:
    """Write the suite's small notes folder under ``home``: six notes, one binary, one hidden."""
    source = home / "notes"
    write_notes(source, dict(NOTES))
    (source / "bad.md").write_bytes(b"# Broken\n\x00\x01\x02 binary \x00 junk")
    (source / ".obsidian").mkdir()
    (source / ".obsidian" / "workspace.md").write_text("# hidden settings\n")
    return source


@pytest.fixture
def notes_dir(home: Path) -> Path:
    """A small notes folder written by the test suite itself."""
    return make_notes(home)


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[NovaProcess]:
    """One idle daemon on the small notes folder, shared by a module's read-only tests."""
    home = short_tmpdir()
    daemon = NovaProcess(make_notes(home), home).start()
    daemon.wait_idle()
    yield daemon
    daemon.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def nova(request: pytest.FixtureRequest, home: Path) -> Iterator[Callable[..., NovaProcess]]:
    """Factory of daemons on ``home``; all are stopped after the test, logs shown on failure."""
    started: list[NovaProcess] = []

    def make(
        source: Path,
        *extra: str,
        start: bool = True,
        wait_ready: bool = True,
        own_home: Path | None = None,
    ) -> NovaProcess:
        proc = NovaProcess(source, own_home or home, *extra)
        started.append(proc)
        return proc.start(wait_ready=wait_ready) if start else proc

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for proc in started:
        proc.stop()
        if failed:
            print(f"--- novad log ({proc.log_path}) ---\n{proc.log()}")
