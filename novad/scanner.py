"""Which files under the source folder are notes, and which of them may have changed.

Rules (the README repeats them for users):

* A note is a regular file whose suffix is one of ``extensions`` (case-insensitive), that
  matches an ``include`` pattern (when any are set) and no ``exclude`` pattern. Patterns
  are gitignore-style (``pathspec``), matched against the path relative to the source
  folder: ``drafts/`` names a folder anywhere, ``/inbox/*.md`` only at the top.
* By default (``DEFAULT_EXCLUDE``) hidden folders (``.git``, ``.obsidian``, ``.trash``)
  and trash folders are not entered. Hidden *files* with a note suffix are notes (tldr's
  ``..md`` is a real page).
* Editor leftovers are never notes, whatever the patterns: Emacs locks (``.#note.md``) and
  autosaves (``#note.md#``), backups (``note.md~``), Office locks (``~$note.md``); vim's
  swap files (``.note.md.swp``) and temporaries of atomic saves (``note.md.tmp.123``) do
  not end in a note suffix.
* Symbolic links are not followed, so nothing outside the source folder is read.
* A path whose name is not valid UTF-8 is left out with a warning: it could not be
  stored, searched or shown faithfully.

Paths are identified by their POSIX path relative to the source folder.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pathspec

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE = (
    ".*/",
    "@eaDir/",
    "#recycle/",
    "$RECYCLE.BIN/",
    "System Volume Information/",
    "lost+found/",
)


def is_note_name(name: str, extensions: tuple[str, ...]) -> bool:
    """Tell whether a file name (no directory part) is a note's."""
    if name.startswith((".#", "~$")) or name.endswith("~"):
        return False
    if name.startswith("#") and name.endswith("#"):
        return False
    return name.lower().endswith(extensions)


class NoteFilter:
    """The rules above for one configuration: note suffixes, include and exclude patterns."""

    def __init__(
        self,
        extensions: tuple[str, ...],
        include: Iterable[str] = (),
        exclude: Iterable[str] = DEFAULT_EXCLUDE,
    ) -> None:
        """Compile the patterns once.

        Raises:
            ValueError: a pattern is not valid gitignore syntax.
            re.error: a pattern's character range is invalid (``[z-a]``).
        """
        self.extensions = extensions
        include, exclude = list(include), list(exclude)
        self._include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self._exclude = pathspec.GitIgnoreSpec.from_lines(exclude)

    def enters(self, rel_dir: str) -> bool:
        """Whether the walk enters the folder ``rel_dir`` (its parents already entered)."""
        return not self._exclude.match_file(rel_dir + "/")

    def within(self, rel: str) -> bool:
        """Whether every folder on the way to ``rel`` (not ``rel`` itself) is entered."""
        parent = rel.rpartition("/")[0]
        return not parent or not self._exclude.match_file(parent + "/")

    def is_note(self, rel: str) -> bool:
        """Whether ``rel`` is a note's path by name and patterns (not whether it exists)."""
        if not is_note_name(rel.rpartition("/")[2], self.extensions):
            return False
        if self._exclude.match_file(rel):
            return False
        return self._include is None or self._include.match_file(rel)


def relative_note_path(source: Path, path: Path, notes: NoteFilter) -> str | None:
    """Return the note id of an absolute path, or None if it can never be a note."""
    try:
        rel = path.relative_to(source)
    except ValueError:
        return None
    if not rel.parts or not _is_utf8(rel) or not notes.is_note(rel.as_posix()):
        return None
    return rel.as_posix()


def walk_notes(source: Path, notes: NoteFilter, under: str = "") -> Iterator[str]:
    """Yield the note id of every note under ``source/under``, in a stable order."""
    top = source / under if under else source
    for dirpath, dirnames, filenames in os.walk(top, onerror=_log_walk_error):
        rel_dir = Path(dirpath).relative_to(source)
        prefix = "" if rel_dir == Path(".") else rel_dir.as_posix() + "/"
        dirnames[:] = sorted(d for d in dirnames if notes.enters(prefix + d))
        for name in sorted(filenames):
            if not notes.is_note(prefix + name):
                continue
            rel = rel_dir / name
            if not _is_utf8(rel):
                log.warning("skipping %r: the file name is not valid UTF-8; rename it", str(rel))
                continue
            if not os.path.islink(os.path.join(dirpath, name)):
                yield rel.as_posix()


def expand_changes(
    source: Path, changed: Iterable[Path], known: Iterable[str], notes: NoteFilter
) -> set[str]:
    """Turn watcher paths into the note ids to re-check.

    A changed path may be a note, a folder that appeared (moved in) or a folder that
    vanished (moved out, deleted); the result covers notes on disk under it and notes the
    manifest knows under it. Whether each one exists is decided later, by looking again.
    """
    known_sorted = sorted(known)
    result: set[str] = set()
    for path in changed:
        rel = _relative(source, path, notes)
        if rel is None:
            continue
        if rel == "" or _is_enterable(source, rel, notes):
            result.update(walk_notes(source, notes, rel))
        note = relative_note_path(source, path, notes)
        if note is not None:
            result.add(note)
        result.update(_under(known_sorted, "" if rel == "" else rel + "/"))
    return result


def passes_a_link(source: Path, rel: str, cache: dict[str, bool] | None = None) -> bool:
    """Tell whether a folder on the way from ``source`` to ``rel`` is a symbolic link.

    Such a path leads out of the notes folder (or around in a loop), so it is never a note,
    even though the kernel resolves it. ``cache`` keeps each folder's answer for a pass.
    """
    prefix = ""
    for part in rel.split("/")[:-1]:
        prefix = f"{prefix}/{part}" if prefix else part
        linked = cache.get(prefix) if cache is not None else None
        if linked is None:
            linked = os.path.islink(source / prefix)
            if cache is not None:
                cache[prefix] = linked
        if linked:
            return True
    return False


def _under(known_sorted: list[str], prefix: str) -> Iterator[str]:
    start = bisect.bisect_left(known_sorted, prefix)
    for item in known_sorted[start:]:
        if not item.startswith(prefix):
            return
        yield item


def _relative(source: Path, path: Path, notes: NoteFilter) -> str | None:
    """The relative path of a watcher path, or None if it lies in a folder never entered.

    Only the folders on the way count: the last part may be a hidden note (``.new.md``),
    and a hidden folder it may name is not walked (``_is_enterable``).
    """
    try:
        rel = path.relative_to(source)
    except ValueError:
        return None
    if rel == Path("."):
        return ""
    posix = rel.as_posix()
    return posix if notes.within(posix) else None


def _is_enterable(source: Path, rel: str, notes: NoteFilter) -> bool:
    """Whether ``rel`` is a folder the walk would enter: not excluded, no link on the way."""
    if not notes.enters(rel):
        return False
    # os.path.isdir, unlike Path.is_dir on 3.11, says False for a folder it may not enter.
    return os.path.isdir(source / rel) and not passes_a_link(source, rel + "/")


def _is_utf8(rel: Path) -> bool:
    try:
        str(rel).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _log_walk_error(exc: OSError) -> None:
    log.warning("cannot list folder %s: %s", exc.filename, exc.strerror)
