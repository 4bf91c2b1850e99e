"""Which files are notes, and how watcher paths become notes to re-check."""

from __future__ import annotations

from pathlib import Path

import pytest

from novad.scanner import NoteFilter, expand_changes, is_note_name, walk_notes

EXT = (".md", ".markdown", ".txt")
NOTES = NoteFilter(EXT)


@pytest.mark.parametrize(
    ("name", "is_note"),
    [
        ("note.md", True),
        ("UPPER.MD", True),
        ("plain.txt", True),
        ("long.markdown", True),
        ("..md", True),
        (".hidden-note.md", True),
        (".#note.md", False),
        ("#note.md#", False),
        ("note.md~", False),
        ("~$note.md", False),
        ("4913", False),
        ("note.md.swp", False),
        ("image.png", False),
    ],
)
def test_note_names(name: str, is_note: bool) -> None:
    assert is_note_name(name, EXT) is is_note


def make_tree(root: Path, files: list[str]) -> None:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")


def test_walk_skips_hidden_and_trash_folders_and_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.md", "sub/b.txt", ".git/c.md", ".trash/d.md", "sub/.obsidian/e.md"])
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("secret")
    (tmp_path / "link.md").symlink_to(outside)
    assert list(walk_notes(tmp_path, NOTES)) == ["a.md", "sub/b.txt"]


def test_a_vanished_folder_expands_to_the_known_notes_under_it(tmp_path: Path) -> None:
    known = ["old/x.md", "old/y/z.md", "older.md", "keep.md"]
    changed = expand_changes(tmp_path, [tmp_path / "old"], known, NOTES)
    assert changed == {"old/x.md", "old/y/z.md"}


def test_a_folder_moved_in_expands_to_the_notes_on_disk(tmp_path: Path) -> None:
    make_tree(tmp_path, ["new/a.md", "new/deep/b.md", "new/skip.png"])
    changed = expand_changes(tmp_path, [tmp_path / "new"], [], NOTES)
    assert changed == {"new/a.md", "new/deep/b.md"}


def test_changes_in_hidden_folders_and_outside_the_source_are_ignored(tmp_path: Path) -> None:
    paths = [tmp_path / ".git" / "x.md", tmp_path.parent / "elsewhere.md", tmp_path / "n.md.swp"]
    assert expand_changes(tmp_path, paths, [], NOTES) == set()


def test_a_hidden_note_named_by_the_watcher_is_rechecked(tmp_path: Path) -> None:
    make_tree(tmp_path, [".new.md", "sub/.draft.txt"])
    paths = [tmp_path / ".new.md", tmp_path / "sub/.draft.txt", tmp_path / ".gone.md"]
    known = [".gone.md", "keep.md"]
    expected = {".new.md", "sub/.draft.txt", ".gone.md"}
    assert expand_changes(tmp_path, paths, known, NOTES) == expected


def test_hidden_folders_and_editor_leftovers_named_by_the_watcher_stay_out(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path, [".obsidian/a.md", ".notes.md/b.md", "@eaDir/c.md", ".#note.md"])
    names = [".obsidian", ".notes.md/b.md", "@eaDir", ".#note.md", "#note.md#", ".trash"]
    paths = [tmp_path / name for name in names]
    assert expand_changes(tmp_path, paths, [], NOTES) == set()


def test_include_and_exclude_patterns_choose_the_notes(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        ["inbox/a.md", "journal/2024/b.md", "journal/drafts/c.md", "top.md", "x/inbox/d.md"],
    )
    notes = NoteFilter(EXT, include=["journal/", "/inbox/"], exclude=["drafts/", ".*/"])
    assert list(walk_notes(tmp_path, notes)) == ["inbox/a.md", "journal/2024/b.md"]
    assert not notes.is_note("x/inbox/d.md")
    assert not notes.enters("journal/drafts")


def test_an_empty_exclude_list_enters_hidden_folders_but_never_takes_editor_leftovers(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path, [".obsidian/a.md", ".obsidian/a.md~", "~$b.md"])
    assert list(walk_notes(tmp_path, NoteFilter(EXT, exclude=[]))) == [".obsidian/a.md"]


def test_changes_under_an_excluded_folder_expand_to_nothing_new(tmp_path: Path) -> None:
    make_tree(tmp_path, ["archive/old.md", "keep.md"])
    notes = NoteFilter(EXT, exclude=["archive/"])
    paths = [tmp_path / "archive", tmp_path / "archive/old.md"]
    changed = expand_changes(tmp_path, paths, [], notes)
    assert changed == set()
