"""Turn a note's text into a title, tags, metadata and sections.

Parsing (``parse_note``) uses markdown-it-py (CommonMark), so headings and code are
recognised exactly as a CommonMark renderer sees them:

- Front matter is a first line of exactly ``---`` closed by a ``---`` or ``...`` line. It
  is split off by hand before markdown-it sees the body: mdit-py-plugins' front-matter rule
  also opens on lines like ``--- Meeting ---`` or ``-----``, which would swallow a plain
  note up to its first horizontal rule. An unclosed block is not front matter (the whole
  file is body, with a warning). YAML that does not load, or that is not a mapping, gives
  no metadata and a warning; the body is indexed anyway.
- Metadata is reduced to Chroma's scalar types: dates become ISO strings, lists become
  ", "-joined strings, mappings become compact JSON, ``None`` values and empty keys are
  dropped, integers outside 64 bits become strings. A value that expands to more than
  ``_MAX_YAML_NODES`` nodes (a YAML alias bomb) is dropped with a warning.
- Tags are the front-matter ``tags`` (a list, or a string split on commas and spaces)
  followed by inline ``#tags`` found in inline text only, never in code or raw HTML. An
  inline tag starts at the start of a line or after whitespace, begins with a letter, digit
  or underscore and continues with letters, digits, marks, ``_ - / .``; trailing ``- / .``
  is dropped. Not tags: all-digit ``#2024``, URL fragments (``page#part``), escaped
  ``\\#word``, single characters (prose such as "the closing #s"), and hex colours: 3, 6
  or 8 hex digits that contain a digit, are upper case or repeat one letter (``#FF0000``,
  ``#fff``, ``#ABC``). Lower-case words spelled with a-f (``#add``, ``#decade``) stay tags:
  notes name things more often than colours. Tags are de-duplicated ignoring case and
  Unicode normal form; the first spelling wins.
- Only headings at the top level of the document start sections; headings inside block
  quotes and list items stay in the body text. A section's heading path is the stack of
  enclosing headings by level; headings with empty text start a section but are left out
  of paths. Text before the first heading is a section with the empty path. Section text
  is the original Markdown source between headings, stripped; blank sections are dropped.
  A note whose headings have no body at all gets one section listing the heading texts.

Trade-offs: the Markdown tree is used for structure, but section text is cut from the
source lines so code fences, tables and links reach the embedder exactly as written.
markdown-it-py is pure Python (about 1 s per MB here), so inline parsing, half of that,
runs only for headings and for text that contains a '#'.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import regex
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

logger = logging.getLogger(__name__)

Scalar = str | int | float | bool

# Something visible: neither whitespace nor an invisible format character.
_VISIBLE = regex.compile(r"[^\s\p{Cf}]")
_OPENING_FENCE = re.compile(r"---[ \t]*")
_CLOSING_FENCE = re.compile(r"(?:---|\.\.\.)[ \t]*")

_TAG = regex.compile(r"(?<!\S)#([\p{L}\p{N}_][\p{L}\p{N}\p{M}_\-/.]*)")
_ALL_DIGITS = regex.compile(r"\p{N}+")
_HEX_COLOUR = re.compile(r"[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8}")
_TAG_SEPARATORS = re.compile(r"[,\s]+")
# Stands in for code, escapes, links and HTML so that a '#' right after them is no tag.
_OPAQUE = "\ufffc"


class _FrontMatterLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's when PyYAML was built with it: several times faster).

    A date that looks like one but is not on the calendar (``2024-02-30``) stays text, so
    one slip does not cost the note its title and tags.
    """


def _lenient_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _lenient_timestamp)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_YAML_NODES = 10_000

# The core inline pass is run by hand (``_parse_markdown``); text_join is off because it
# would merge escapes ("\\#") into plain text, where they would read as tags.
_MARKDOWN = MarkdownIt("commonmark").disable(["inline", "text_join"])


@dataclass(frozen=True)
class Section:
    """The body under one heading.

    Attributes:
        headings: Heading path, outermost first; headings with empty text are left out.
        text: The Markdown source under the heading (heading line excluded), stripped.
    """

    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class ParsedNote:
    """A note reduced to what the index stores.

    Attributes:
        title: Front-matter title, else the first top-level h1, else the file stem.
        tags: Front-matter tags, then inline tags; de-duplicated, in order, without '#'.
        metadata: Front matter normalised to Chroma's scalar types.
        sections: Non-blank sections in document order.
        warnings: Problems worth a log line that did not stop indexing.
    """

    title: str
    tags: tuple[str, ...]
    metadata: dict[str, Scalar]
    sections: tuple[Section, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    first_line: int
    end_line: int


def is_blank(text: str) -> bool:
    """Return True if ``text`` has nothing visible (Unicode whitespace or format chars)."""
    return _VISIBLE.search(text) is None


def parse_note(text: str, name: str) -> ParsedNote:
    """Split a decoded note into title, tags, metadata and sections.

    Args:
        text: The note's text, as returned by ``decode_note``.
        name: The note's path relative to the notes folder; gives the fallback title.

    Returns:
        The parsed note. Problems that do not stop indexing are in ``warnings``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    lines = text.split("\n")
    source, body_start, warnings = _split_front_matter(lines)
    raw = _load_front_matter(source, warnings)
    metadata = _normalise_metadata(raw, warnings)
    body = lines[body_start:]
    tokens = _parse_markdown("\n".join(body))
    headings = _top_level_headings(tokens)
    sections = _sections(body, headings)
    note = ParsedNote(
        title=_title(metadata, headings, name),
        tags=_dedupe([*_front_matter_tags(raw.get("tags")), *_inline_tags(tokens)]),
        metadata=metadata,
        sections=tuple(sections),
        warnings=tuple(warnings),
    )
    logger.debug(
        "parsed %s: %d sections, %d tags, %d warnings",
        name,
        len(note.sections),
        len(note.tags),
        len(note.warnings),
    )
    return note


def _split_front_matter(lines: list[str]) -> tuple[str | None, int, list[str]]:
    """Return the front matter's YAML (None if there is none), its line count, and warnings."""
    if len(lines) < 2 or not _OPENING_FENCE.fullmatch(lines[0]):
        return None, 0, []
    for index in range(1, len(lines)):
        if _CLOSING_FENCE.fullmatch(lines[index]):
            return "\n".join(lines[1:index]), index + 1, []
    unclosed = (
        "front matter opened by '---' on line 1 is never closed; "
        "indexed the whole note as body, without metadata"
    )
    return None, 0, [unclosed]


def _load_front_matter(source: str | None, warnings: list[str]) -> dict[Any, Any]:
    """Load front-matter YAML as a mapping; on any problem add a warning and return {}."""
    if source is None:
        return {}
    try:
        loaded = yaml.load(source, Loader=_FrontMatterLoader)  # a safe loader, see above
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        warnings.append(
            f"front matter is not valid YAML ({_yaml_problem(exc)}); indexed without metadata"
        )
        return {}
    if loaded is None or isinstance(loaded, dict):
        return loaded or {}
    kind = type(loaded).__name__
    warnings.append(
        f"front matter is a YAML {kind}, not key: value pairs; indexed without metadata"
    )
    return {}


def _parse_markdown(body: str) -> list[Token]:
    """Parse blocks, then inline content only where headings or tags can come from.

    Inline parsing is half of markdown-it's time and only headings and text with a '#'
    need it, so it runs for those alone (as markdown-it's own inline pass would).
    """
    env: dict[str, Any] = {}
    tokens = _MARKDOWN.parse(body, env)
    for index, token in enumerate(tokens):
        is_heading = index > 0 and tokens[index - 1].type == "heading_open"
        if token.type == "inline" and (is_heading or "#" in token.content):
            token.children = []
            _MARKDOWN.inline.parse(token.content, _MARKDOWN, env, token.children)
    return tokens


def _yaml_problem(exc: Exception) -> str:
    """Describe a YAML load failure in one line, with its line number in the note."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        # +1 for counting from one, +1 for the opening '---' line.
        return f"{exc.problem} at line {exc.problem_mark.line + 2}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _normalise_metadata(raw: Mapping[Any, Any], warnings: list[str]) -> dict[str, Scalar]:
    """Reduce front matter to Chroma's scalar metadata types (see the module docstring)."""
    metadata: dict[str, Scalar] = {}
    for key, value in raw.items():
        name = "" if key is None else _scalar_text(key)
        if not name.strip() or value is None:
            continue
        if _node_count(value) > _MAX_YAML_NODES:
            warnings.append(f"front matter key {name!r} is too large to store; dropped")
            continue
        metadata[name] = _scalar(value)
    return metadata


def _scalar(value: Any) -> Scalar:
    """Convert one front-matter value to a str, int, float or bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return ", ".join(_item_text(item) for item in items if item is not None)
    if isinstance(value, Mapping):
        return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return _scalar_text(value)


def _item_text(item: Any) -> str:
    """Render one list item: nested containers as JSON, everything else as text."""
    if isinstance(item, Mapping | list | tuple | set | frozenset):
        return json.dumps(_jsonable(item), ensure_ascii=False, separators=(",", ":"))
    return _scalar_text(item)


def _scalar_text(value: Any) -> str:
    """Render a scalar as text; dates and times in ISO 8601."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    """Return ``value`` with only JSON types: string keys, ISO dates, finite numbers."""
    if isinstance(value, Mapping):
        return {_scalar_text(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _scalar_text(value)


def _node_count(value: Any, limit: int = _MAX_YAML_NODES) -> int:
    """Count the nodes under ``value``, stopping just past ``limit`` (aliases may loop)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
    return count


def _top_level_headings(tokens: Sequence[Token]) -> list[_Heading]:
    """Return the headings that are not inside a block quote or list item."""
    headings = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.level != 0 or token.map is None:
            continue
        children = tokens[index + 1].children or []
        text = _plain_text(children)
        headings.append(_Heading(int(token.tag[1:]), text, token.map[0], token.map[1]))
    return headings


def _plain_text(children: Iterable[Token]) -> str:
    """Return the readable text of inline tokens (heading text without Markdown marks)."""
    parts = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts).strip()


def _sections(lines: list[str], headings: list[_Heading]) -> list[Section]:
    """Cut the body lines into sections at top-level headings (see the module docstring)."""
    sections: list[Section] = []
    stack: list[_Heading] = []
    cursor = 0
    for heading in headings:
        _append_section(sections, stack, lines[cursor : heading.first_line])
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        cursor = heading.end_line
    _append_section(sections, stack, lines[cursor:])
    if not sections and any(h.text for h in headings):
        # A note of bare headings (an outline) is still worth finding by those headings.
        sections.append(Section((), "\n".join(h.text for h in headings if h.text)))
    return sections


def _append_section(sections: list[Section], stack: list[_Heading], lines: list[str]) -> None:
    """Append a section for ``lines`` under the heading ``stack`` unless it is blank."""
    text = "\n".join(lines).strip()
    if not is_blank(text):
        sections.append(Section(tuple(h.text for h in stack if h.text), text))


def _title(metadata: Mapping[str, Scalar], headings: Sequence[_Heading], name: str) -> str:
    """Pick the front-matter title, else the first top-level h1, else the file stem."""
    candidates = [
        str(metadata.get("title", "")),
        next((h.text for h in headings if h.level == 1 and h.text), ""),
        PurePosixPath(name).stem,
        name,
    ]
    return next((" ".join(c.split()) for c in candidates if c.strip()), "")


def _front_matter_tags(value: Any) -> Iterator[str]:
    """Yield the tags named by a front-matter ``tags`` value (a list or a string)."""
    if isinstance(value, str):
        items: list[Any] = _TAG_SEPARATORS.split(value)
    elif isinstance(value, list | tuple):
        items = [item for item in value if isinstance(item, str | int | float)]
    else:
        return
    for item in items:
        tag = str(item).strip().lstrip("#").strip()
        if tag:
            yield tag


def _inline_tags(tokens: Sequence[Token]) -> Iterator[str]:
    """Yield inline ``#tags`` from the text of every inline token, outside code."""
    for token in tokens:
        if token.type == "inline" and token.children:
            yield from _tags_in(_tag_text(token.children))


def _tag_text(children: Iterable[Token]) -> str:
    """Return inline text with code, escapes, links and HTML masked out."""
    parts = []
    for child in children:
        if child.type == "text" or (child.type == "text_special" and child.info != "escape"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type in ("code_inline", "text_special", "image", "html_inline", "link_open"):
            parts.append(_OPAQUE)
    return "".join(parts)


def _tags_in(text: str) -> Iterator[str]:
    """Yield the tags written in ``text`` by the rules in the module docstring."""
    for match in _TAG.finditer(text):
        tag = match.group(1).rstrip("-/.\ufe0e\ufe0f")
        if len(tag) > 1 and not _ALL_DIGITS.fullmatch(tag) and not _is_hex_colour(tag):
            yield tag


def _is_hex_colour(tag: str) -> bool:
    """Return True for ``FF0000``, ``fff``, ``ABC``; False for words like ``add``."""
    if not _HEX_COLOUR.fullmatch(tag):
        return False
    has_digit = any(c.isdigit() for c in tag)
    return has_digit or tag.isupper() or len(set(tag)) == 1


def _dedupe(tags: Iterable[str]) -> tuple[str, ...]:
    """Drop repeated tags, comparing case- and normalisation-insensitively."""
    seen: set[str] = set()
    kept = []
    for tag in tags:
        key = unicodedata.normalize("NFC", tag).casefold()
        if key not in seen:
            seen.add(key)
            kept.append(tag)
    return tuple(kept)
