"""Which files under the source folder are notes, and which of them may have changed.

Rules (the README repeats them for users):

* A note is a regular file whose suffix is one of ``extensions`` (case-insensitive).
* Hidden folders (``.git``, ``.obsidian``, ``.trash`` ...) and trash folders are not
  entered. Hidden *files* with a note suffix are notes (tldr's ``..md`` is a real page).
* Editor leftovers are never notes: Emacs locks (``.#note.md``) and autosaves
  (``#note.md#``), backups (``note.md~``), Office locks (``~$note.md``).
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

log = logging.getLogger(__name__)

TRASH_DIRS = frozenset({"@eaDir", "$RECYCLE.BIN", "lost+found"})


def is_note_name(name: str, extensions: tuple[str, ...]) -> bool:
    """Tell whether a file name (no directory part) is a note's."""
    if name.startswith((".#", "~$")) or name.endswith("~"):
        return False
    if name.startswith("#") and name.endswith("#"):
        return False
    return name.lower().endswith(extensions)


def is_skipped_dir(name: str) -> bool:
    """Tell whether a folder of this name is never entered."""
    return name.startswith(".") or name in TRASH_DIRS


def relative_note_path(source: Path, path: Path, extensions: tuple[str, ...]) -> str | None:
    """Return the note id of an absolute path, or None if it can never be a note."""
    try:
        rel = path.relative_to(source)
    except ValueError:
        return None
    parts = rel.parts
    if not parts or any(is_skipped_dir(p) for p in parts[:-1]):
        return None
    if not is_note_name(parts[-1], extensions) or not _is_utf8(rel):
        return None
    return rel.as_posix()


def walk_notes(source: Path, extensions: tuple[str, ...], under: str = "") -> Iterator[str]:
    """Yield the note id of every note under ``source/under``, in a stable order."""
    top = source / under if under else source
    for dirpath, dirnames, filenames in os.walk(top, onerror=_log_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_dir(d))
        rel_dir = Path(dirpath).relative_to(source)
        for name in sorted(filenames):
            if not is_note_name(name, extensions):
                continue
            rel = rel_dir / name
            if not _is_utf8(rel):
                log.warning("skipping %r: the file name is not valid UTF-8; rename it", str(rel))
                continue
            if not os.path.islink(os.path.join(dirpath, name)):
                yield rel.as_posix()


def expand_changes(
    source: Path, changed: Iterable[Path], known: Iterable[str], extensions: tuple[str, ...]
) -> set[str]:
    """Turn watcher paths into the note ids to re-check.

    A changed path may be a note, a folder that appeared (moved in) or a folder that
    vanished (moved out, deleted); the result covers notes on disk under it and notes the
    manifest knows under it. Whether each one exists is decided later, by looking again.
    """
    known_sorted = sorted(known)
    result: set[str] = set()
    for path in changed:
        rel = _relative(source, path)
        if rel is None:
            continue
        if rel == "" or _is_enterable(source, rel):
            result.update(walk_notes(source, extensions, rel))
        note = relative_note_path(source, path, extensions)
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


def _relative(source: Path, path: Path) -> str | None:
    """The relative path of a watcher path, or None if it lies in a folder never entered.

    Only the folders on the way count: the last part may be a hidden note (``.new.md``),
    and a hidden folder it may name is not walked (``_is_enterable``).
    """
    try:
        rel = path.relative_to(source)
    except ValueError:
        return None
    if any(is_skipped_dir(p) for p in rel.parts[:-1]):
        return None
    return "" if rel == Path(".") else rel.as_posix()


def _is_enterable(source: Path, rel: str) -> bool:
    """Whether ``rel`` is a folder the walk would enter: not hidden or trash, no link on the way."""
    if is_skipped_dir(rel.rsplit("/", 1)[-1]):
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
