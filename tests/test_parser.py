"""novad.parser: how note bytes are decoded or skipped, and how text becomes sections.

Each rule has a small inline fixture here; the last part checks every file of the shared
edge corpus against its ``expected.json`` and is skipped when the corpus is absent.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from novad.decoding import NUL_REASON, decode_note
from novad.errors import NoteError
from novad.parser import ParsedNote, is_blank, parse_note
from tests.corpus import corpus_dir, require_corpus


def parse(text: str, name: str = "notes/example.md") -> ParsedNote:
    return parse_note(text, name)


def paths(note: ParsedNote) -> list[tuple[str, ...]]:
    return [section.headings for section in note.sections]


# --- decoding -------------------------------------------------------------------------


def test_valid_utf8_is_decoded_as_is_without_warning() -> None:
    decoded = decode_note("# Café ✓ 笔记 🏕️\n".encode())
    assert (decoded.text, decoded.encoding, decoded.warning) == ("# Café ✓ 笔记 🏕️\n", "utf-8", None)


def test_utf8_bom_is_stripped_before_front_matter_is_looked_for() -> None:
    decoded = decode_note(b"\xef\xbb\xbf---\ntitle: With BOM\n---\n# Body\n\ntext\n")
    note = parse(decoded.text)
    assert decoded.encoding == "utf-8-sig"
    assert decoded.warning is None
    assert not decoded.text.startswith("\ufeff")
    assert note.title == "With BOM"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom_is_decoded_with_a_warning(codec: str) -> None:
    bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
    decoded = decode_note(bom + "# UTF-16 note\r\n\r\nBody #tag\r\n".encode(codec))
    assert decoded.encoding == "utf-16"
    assert decoded.warning is not None and "UTF-16" in decoded.warning
    assert decoded.text == "# UTF-16 note\n\nBody #tag\n"


def test_utf16_without_bom_is_skipped_for_its_nul_bytes() -> None:
    with pytest.raises(NoteError) as caught:
        decode_note("# No BOM\nplain text\n".encode("utf-16-le"))
    assert caught.value.reason == NUL_REASON


def test_nul_byte_after_20_kb_of_text_is_still_binary() -> None:
    data = b"# Looks like text\n" + b"lorem ipsum dolor sit amet\n" * 800 + b"\x00\x00tail"
    assert len(data) > 20_000
    with pytest.raises(NoteError) as caught:
        decode_note(data)
    assert caught.value.reason == NUL_REASON


def test_nul_byte_after_a_utf8_bom_is_binary() -> None:
    with pytest.raises(NoteError):
        decode_note(b"\xef\xbb\xbftext\x00more")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP"),
        (b"GIF89a\x01\x00\x01\x00", "GIF"),
    ],
)
def test_known_binary_signature_is_skipped_with_its_format_named(data: bytes, kind: str) -> None:
    with pytest.raises(NoteError) as caught:
        decode_note(data)
    assert caught.value.reason.startswith("binary content:")
    assert kind in caught.value.reason


@pytest.mark.parametrize("start", ["BMW fleet notes", "MZ-80 repair log", "ID3 tags explained"])
def test_text_starting_like_a_short_binary_magic_is_text(start: str) -> None:
    decoded = decode_note(f"{start}\n\nmore text\n".encode())
    assert decoded.text.startswith(start)
    assert decoded.warning is None


def test_cp1252_without_any_utf8_multibyte_sequence_falls_back_to_cp1252() -> None:
    decoded = decode_note(b"# Caf\xe9 cr\xe8me \x97 na\xefve\n\nPrice: \x80 5, \xbd off. #legacy\n")
    assert decoded.encoding == "cp1252"
    assert decoded.text == "# Café crème — naïve\n\nPrice: € 5, ½ off. #legacy\n"
    assert decoded.warning == "not valid UTF-8 (first bad byte at offset 5); decoded as cp1252"


def test_invalid_bytes_next_to_valid_utf8_are_replaced_and_counted() -> None:
    data = "naïve café ✓ ".encode() + b"\xff\xfe lone \x80 end"
    decoded = decode_note(data)
    assert decoded.encoding == "utf-8+replace"
    assert decoded.text == "naïve café ✓ \ufffd\ufffd lone \ufffd end"
    assert decoded.warning is not None and "3 byte(s) replaced with U+FFFD" in decoded.warning


def test_truncated_multibyte_sequence_at_end_of_file_is_replaced() -> None:
    decoded = decode_note("café done ✓".encode()[:-1])
    assert decoded.encoding == "utf-8+replace"
    assert decoded.text == "café done \ufffd"


def test_ascii_with_one_truncated_sequence_reads_as_cp1252_by_the_documented_rule() -> None:
    decoded = decode_note("done ✓".encode()[:-1])
    assert (decoded.encoding, decoded.text) == ("cp1252", "done âœ")


def test_bytes_undefined_in_cp1252_fall_back_to_replacement() -> None:
    decoded = decode_note(b"abc \x81 def")
    assert decoded.encoding == "utf-8+replace"
    assert decoded.text == "abc \ufffd def"


def test_crlf_and_bare_cr_become_lf() -> None:
    decoded = decode_note(b"# A\r\n\r\nline one\rline two\r\n")
    assert decoded.text == "# A\n\nline one\nline two\n"


@pytest.mark.parametrize("data", [b"", b"\n\n", b" \t\r\n\xc2\xa0\xe3\x80\x80\n"])
def test_empty_or_whitespace_only_note_decodes_and_has_no_sections(data: bytes) -> None:
    decoded = decode_note(data)
    note = parse(decoded.text, "blank.md")
    assert is_blank(decoded.text)
    assert note.sections == ()
    assert note.warnings == ()


# --- front matter and metadata ------------------------------------------------------------


def test_front_matter_gives_title_tags_and_metadata() -> None:
    note = parse("---\ntitle: Tomatoes\ntags: [garden, summer]\n---\n# Growing\n\nSun.\n")
    assert note.title == "Tomatoes"
    assert note.tags == ("garden", "summer")
    assert note.metadata == {"title": "Tomatoes", "tags": "garden, summer"}
    assert note.warnings == ()


def test_front_matter_may_close_with_three_dots() -> None:
    note = parse("---\ntitle: Pandoc style\n...\nBody text.\n")
    assert note.title == "Pandoc style"
    assert [s.text for s in note.sections] == ["Body text."]


def test_front_matter_is_never_part_of_section_text() -> None:
    note = parse("---\ntitle: Secret\nkey: value\n---\nIntro\n\n# Heading\n\nBody\n")
    assert [s.text for s in note.sections] == ["Intro", "Body"]
    assert all("key: value" not in s.text for s in note.sections)


def test_unclosed_front_matter_is_indexed_as_body_with_a_warning() -> None:
    note = parse("---\ntitle: Broken\ntags: [a, b\n\n# Heading after\n\nText #recovered\n")
    assert note.metadata == {}
    assert note.title == "Heading after"
    assert note.tags == ("recovered",)
    assert "never closed" in note.warnings[0]
    assert "title: Broken" in note.sections[0].text


def test_invalid_yaml_keeps_the_body_without_metadata_and_warns() -> None:
    note = parse('---\ntitle: "Unclosed\n\tindented: x\n---\n# Valid body\n\ntext #yaml-error\n')
    assert note.metadata == {}
    assert note.title == "Valid body"
    assert note.tags == ("yaml-error",)
    assert note.warnings[0].startswith("front matter is not valid YAML (")
    assert note.warnings[0].endswith("); indexed without metadata")


def test_impossible_calendar_date_stays_text_and_keeps_the_rest() -> None:
    note = parse("---\ntitle: Plan\ndate: 2024-02-30\ntags: [a]\n---\nBody\n")
    assert note.metadata["date"] == "2024-02-30"
    assert (note.title, note.tags) == ("Plan", ("a",))
    assert note.warnings == ()


def test_front_matter_that_is_not_a_mapping_is_ignored_with_a_warning() -> None:
    note = parse("---\n- just\n- a list\n---\nBody\n")
    assert note.metadata == {}
    assert "not key: value pairs" in note.warnings[0]
    assert [s.text for s in note.sections] == ["Body"]


def test_empty_front_matter_block_is_no_metadata_and_no_warning() -> None:
    note = parse("---\n---\nBody\n")
    assert (note.metadata, note.warnings) == ({}, ())


def test_setext_underline_later_in_the_file_is_not_front_matter() -> None:
    note = parse("Intro line\n\nTitle\n---\n\nText\n\n---\n\nMore\n")
    assert note.metadata == {}
    assert note.warnings == ()
    assert paths(note) == [(), ("Title",)]


def test_first_line_of_dashes_and_words_is_not_a_front_matter_fence() -> None:
    note = parse("--- Meeting ---\nagenda\n\n---\n\n# Notes\n\nbody\n")
    assert note.metadata == {}
    assert note.sections[0].text.startswith("--- Meeting ---")


def test_metadata_is_normalised_to_chroma_scalar_types() -> None:
    note = parse(
        "---\n"
        "date: 2024-01-05\n"
        "updated: 2024-01-05 10:30:00\n"
        "tags: [alpha, beta]\n"
        "draft:\n"
        "author: {name: X, since: 2020-01-01}\n"
        "rating: 4.5\n"
        "id: 123456789012345678901234\n"
        "small: 42\n"
        "publish: true\n"
        'title: ""\n'
        "creation date: 2024-03-01\n"
        '"": empty key\n'
        "nested: [[a, b], c]\n"
        "---\n# Heading\n\nBody\n"
    )
    assert note.metadata == {
        "date": "2024-01-05",
        "updated": "2024-01-05T10:30:00",
        "tags": "alpha, beta",
        "author": '{"name":"X","since":"2020-01-01"}',
        "rating": 4.5,
        "id": "123456789012345678901234",
        "small": 42,
        "publish": True,
        "title": "",
        "creation date": "2024-03-01",
        "nested": '["a","b"], c',
    }
    assert note.title == "Heading"


def test_yaml_alias_bomb_value_is_dropped_with_a_warning() -> None:
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for depth in range(1, 6):
        prev = chr(ord("a") + depth - 1)
        name = chr(ord("a") + depth)
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    note = parse("---\n" + "\n".join(levels) + "\ntitle: Bomb\n---\nBody\n")
    assert "f" not in note.metadata
    assert note.metadata["title"] == "Bomb"
    assert any("too large" in w for w in note.warnings)


# --- title ----------------------------------------------------------------------------------


def test_title_falls_back_to_first_h1_then_to_the_file_stem() -> None:
    assert parse("## Minor\n\n# Major\n\ntext\n").title == "Major"
    assert parse("## Only minor\n\ntext\n", "dir/my note.md").title == "my note"


def test_empty_front_matter_title_falls_back_to_the_heading() -> None:
    assert parse('---\ntitle: ""\n---\n# Real title\n\ntext\n').title == "Real title"


# --- tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Ends a sentence #tag.", ["tag"]),
        ("Nested #context/home and #a/b-c.d, too", ["context/home", "a/b-c.d"]),
        ("#NoSpaceAfterHash at line start", ["NoSpaceAfterHash"]),
        ("Unicode #café #笔记 #متابعة #_under", ["café", "笔记", "متابعة", "_under"]),
        ("Digits only #2024 or #1984 are not tags, #y2024 is", ["y2024"]),
        ("Colours #FF0000 #fff #ABC #12ab34 are not tags", []),
        ("Words spelled with a-f stay tags: #add #decade #cafe", ["add", "decade", "cafe"]),
        ("URL fragments page#frag and https://x.org/#top are not tags", []),
        ("Escaped \\#notatag and the closing #s of a heading", []),
        ("Code `#inline` and **#bold** and <span>#html</span>", ["bold"]),
        ("[#linktext](https://example.org) is a link", []),
        ("Emoji #🏕️camping is not a tag, #trip🏕️ keeps its letters", ["trip"]),
    ],
)
def test_inline_tag_syntax(body: str, expected: list[str]) -> None:
    assert list(parse(body).tags) == expected


def test_hash_space_at_line_start_is_a_heading_not_a_tag() -> None:
    note = parse("# Heading\n\ntext\n")
    assert note.tags == ()
    assert paths(note) == [("Heading",)]


def test_tags_inside_fenced_and_indented_code_are_not_tags() -> None:
    body = (
        "Real #outside\n\n```python\n#commented\nx = 1  # #notag\n```\n\n"
        "    #indented-code\n\n~~~\n#tilde-fence\n~~~\n"
    )
    assert parse(body).tags == ("outside",)


def test_tags_in_headings_list_items_and_blockquotes_count() -> None:
    note = parse("# Title #in-heading\n\n- item #in-list\n\n> quoted #in-quote\n")
    assert note.tags == ("in-heading", "in-list", "in-quote")


def test_front_matter_tags_come_first_and_duplicates_are_dropped_ignoring_case() -> None:
    note = parse("---\ntags: [Garden, '#summer']\n---\nText #garden #new #summer #New\n")
    assert note.tags == ("Garden", "summer", "new")


def test_front_matter_tags_string_is_split_on_commas_and_spaces() -> None:
    assert parse("---\ntags: '#one, two three'\n---\nBody\n").tags == ("one", "two", "three")


def test_front_matter_tags_of_other_shapes_are_ignored_not_stringified() -> None:
    assert parse("---\ntags: {a: 1}\n---\nBody\n").tags == ()
    assert parse("---\ntags: [ok, {a: 1}, null, [x]]\n---\nBody\n").tags == ("ok",)


# --- headings and sections ------------------------------------------------------------------


def test_sections_carry_the_heading_path_by_level() -> None:
    note = parse("# A\n\na\n\n## B\n\nb\n\n### C\n\nc\n\n## D\n\nd\n\n# E\n\ne\n")
    assert paths(note) == [("A",), ("A", "B"), ("A", "B", "C"), ("A", "D"), ("E",)]
    assert [s.text for s in note.sections] == ["a", "b", "c", "d", "e"]


def test_h3_under_h1_without_h2_has_a_two_level_path() -> None:
    assert paths(parse("# Top\n\n### Deep\n\ntext\n")) == [("Top", "Deep")]


def test_closing_hashes_trailing_spaces_and_indent_are_not_heading_text() -> None:
    note = parse("## Risks ##\nr\n## Notes   \nn\n   ### Indented\ni\n")
    assert paths(note) == [("Risks",), ("Notes",), ("Notes", "Indented")]


def test_setext_headings_start_sections() -> None:
    note = parse("Big\n===\n\nunder big\n\nSmall\n-----\n\nunder small\n")
    assert paths(note) == [("Big",), ("Big", "Small")]


def test_inline_markup_is_removed_from_heading_text() -> None:
    assert paths(parse("# The *big* `plan` \\#2\n\ntext\n")) == [("The big plan #2",)]


def test_headings_inside_blockquotes_and_list_items_stay_in_the_body() -> None:
    note = parse("# Top\n\n> # Quoted heading\n\n- # Listed heading\n\nend\n")
    assert paths(note) == [("Top",)]
    assert "> # Quoted heading" in note.sections[0].text
    assert "- # Listed heading" in note.sections[0].text


def test_hash_lines_inside_a_four_backtick_fence_are_not_headings() -> None:
    body = "# Real\n\n````python\n# comment\n```\n# still code\n```\n````\n\n## After\n\ntext\n"
    note = parse(body)
    assert paths(note) == [("Real",), ("Real", "After")]
    assert note.sections[0].text.startswith("````python\n# comment\n```")


def test_text_before_the_first_heading_has_the_empty_path() -> None:
    assert paths(parse("preamble\n\n# H\n\nbody\n")) == [(), ("H",)]


def test_headings_without_body_give_no_empty_sections() -> None:
    note = parse("# A\n\n## B\n\n## C\n\nonly C has text\n")
    assert paths(note) == [("A", "C")]


def test_empty_heading_ends_a_section_but_is_left_out_of_paths() -> None:
    note = parse("# Alpha\n\na\n\n#\n\nunder empty\n\n## Child\n\nc\n")
    assert paths(note) == [("Alpha",), (), ("Child",)]


def test_body_keeps_the_markdown_source_of_code_fences_and_links() -> None:
    body = "# H\n\nSee [docs](https://x.org) and [[Wiki link]].\n\n```sh\n$ ls -la\n```\n"
    assert parse(body).sections[0].text == body.split("\n", 2)[2].strip()


def test_note_of_only_headings_gets_one_section_listing_them() -> None:
    note = parse("# Project\n## Goals\n#\n### \n## Timeline ##\n")
    assert note.sections[0].headings == ()
    assert note.sections[0].text == "Project\nGoals\nTimeline"
    assert len(note.sections) == 1


def test_note_with_only_front_matter_has_no_sections() -> None:
    note = parse("---\ntitle: Only metadata\nrating: 4.5\n---\n")
    assert note.sections == ()
    assert note.metadata == {"title": "Only metadata", "rating": 4.5}


def test_bare_cr_line_endings_still_separate_headings() -> None:
    note = parse("# Mixed\r\rCR text\r## CR section\r\rmore\r")
    assert paths(note) == [("Mixed",), ("Mixed", "CR section")]


def test_logseq_properties_and_wikilinks_are_kept_as_text() -> None:
    note = parse("type:: [[Feature]]\n- ## Item heading\n\t- child [[Page]] #task\n")
    assert note.tags == ("task",)
    assert "type:: [[Feature]]" in note.sections[0].text
    assert paths(note) == [()]


# --- the shared edge corpus ---------------------------------------------------------------


def _edge_entries() -> list[Any]:
    root = corpus_dir()
    if root is None:
        return [pytest.param(None, id="corpus-missing")]
    entries = json.loads((root / "edge" / "expected.json").read_text(encoding="utf-8"))["files"]
    return [pytest.param(e, id=e["path"][:40]) for e in entries if e["action"] != "ignore"]


def _heading_texts(note: ParsedNote) -> set[str]:
    return {h for s in note.sections for h in s.headings}


def _listed_headings(note: ParsedNote) -> set[str]:
    """Lines of a leading section without a heading path (a headings-only note's list)."""
    if note.sections and note.sections[0].headings == ():
        return set(note.sections[0].text.split("\n"))
    return set()


def _assert_clean(note: ParsedNote) -> None:
    values = [note.title, *note.tags, *(str(v) for v in note.metadata.values())]
    values += [s.text for s in note.sections] + [h for s in note.sections for h in s.headings]
    for value in values:
        assert "\ufeff" not in value and "\r" not in value and "\x00" not in value


@pytest.mark.corpus
@pytest.mark.parametrize("entry", _edge_entries())
def test_edge_corpus_file_matches_expected(entry: dict[str, Any] | None) -> None:
    edge = require_corpus() / "edge"
    assert entry is not None
    data = (edge / entry["path"]).read_bytes()
    if entry["action"] == "skip" and data.strip(b" \t\r\n\xc2\xa0\xe3\x80\x80"):
        if entry["path"].startswith("."):
            return  # hidden folders are the scanner's business, not the parser's
        with pytest.raises(NoteError):
            decode_note(data)
        return
    decoded = decode_note(data)
    if "fallback" in entry["action"]:
        assert decoded.warning
    note = parse_note(decoded.text, entry["path"])
    _assert_clean(note)
    _check_expectations(note, entry)


def _check_expectations(note: ParsedNote, entry: dict[str, Any]) -> None:
    front = entry.get("front_matter", {})
    if "title" in front:
        assert note.title == front["title"]
    expected_tags = [*front.get("tags", []), *entry.get("inline_tags", [])]
    optional = set(entry.get("inline_tags_optional", []))
    if "inline_tags" in entry:
        assert set(note.tags) - optional == set(expected_tags)
    headings = entry.get("headings", entry.get("headings_if_cp1252"))
    if isinstance(headings, list):
        expected = {text for _, text in headings if text}
        assert _heading_texts(note) <= expected
        assert expected <= _heading_texts(note) | _listed_headings(note)
    if entry["action"] == "skip":
        assert note.sections == ()


@pytest.mark.corpus
def test_edge_readme_has_no_tags_because_they_are_in_backticks() -> None:
    readme = require_corpus() / "edge" / "README.md"
    assert parse_note(decode_note(readme.read_bytes()).text, "README.md").tags == ()


@pytest.mark.corpus
def test_edge_deep_headings_has_21_top_level_headings_and_a_six_level_path() -> None:
    path = require_corpus() / "edge" / "deep-headings.md"
    note = parse_note(decode_note(path.read_bytes()).text, "deep-headings.md")
    assert len(note.sections) == 21
    assert paths(note)[17] == tuple(f"Part 3 level {n}" for n in range(1, 7))
    all_headings = _heading_texts(note)
    assert "Heading inside a blockquote" not in all_headings
    assert "NoSpaceAfterHash" in note.tags


@pytest.mark.corpus
def test_edge_nfd_file_name_gives_the_title_as_written() -> None:
    edge = require_corpus() / "edge"
    path = next(p for p in edge.iterdir() if p.name.startswith("Re"))
    note = parse_note(decode_note(path.read_bytes()).text, path.name)
    assert unicodedata.normalize("NFC", note.title) == "Résumé draft"


@pytest.mark.corpus
def test_edge_invalid_utf8_keeps_text_after_the_damage() -> None:
    path = require_corpus() / "edge" / "invalid-utf8.md"
    decoded = decode_note(Path(path).read_bytes())
    assert decoded.encoding == "utf-8+replace"
    assert "Still readable after the damage" in decoded.text
    assert "naïve café ✓" in decoded.text
