"""Cut a parsed note's sections into chunks that fit the embedding model's window.

Sizes are counted in the model's own word pieces, never in characters or words: a CJK
paragraph has no spaces, and all-MiniLM-L6-v2 reads at most 256 pieces, [CLS] and [SEP]
included; text past the window would be dropped from the vector without a trace.

How a section becomes chunks:

1. The section text is split into paragraphs at blank lines, and each paragraph into
   sentences: after ``. ! ? …`` followed by whitespace, after CJK and full-width
   ``。 ！ ？ ．``, and at line breaks. All pieces of a note are counted in one batch.
2. Paragraphs are packed whole, in order, up to ``target_tokens``. A paragraph too long
   for one chunk is packed sentence by sentence instead; a sentence that is itself too
   long is cut by word-piece offsets from one tokenisation of it, preferring the last
   whitespace in the second half of the window. A cut never falls inside a grapheme
   cluster as the ``regex`` module's ``\\X`` defines it (combining marks, variation
   selectors, ZWJ emoji, skin tones, flags, Indic conjuncts). Nothing is ever truncated:
   every visible character of the body is in exactly one chunk, in order.
3. A chunk also holds at most 10 visible characters per word piece of its budget. The
   tokenizer reads a run without spaces or punctuation (base64, a string of emoji, any
   "word" over 100 characters) as one [UNK]; without this bound such a run would become
   one unreadable chunk of any length.
4. Each chunk is embedded as a context line (title and heading path joined with " > ")
   plus a blank line plus its text. The context is counted once per section and the body
   budget shrinks to fit it, but never below half the window: an absurd context line is
   shortened instead.
5. Counts add up across whitespace and punctuation, where BERT's pre-tokenizer splits
   anyway, so a chunk's size is known from its pieces. Where that does not hold (a cut
   inside a word, a shortened context line) the finished ``embed_text`` is counted again
   and the chunk cut again with a smaller budget if it overflows.

Trade-offs: tokenising costs about 1 s per MB of text here (the vault's 3.6 MB of notes
chunk in about 5 s); counting only the uncertain chunks a second time keeps that to one
pass. Chunks do not overlap: the heading context in every chunk carries the shared
meaning instead.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import regex
from tokenizers import Tokenizer

from novad.errors import EmbedderError
from novad.parser import ParsedNote, is_blank

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the model around every input
_MAX_REFITS = 4
_MAX_CHARS_PER_TOKEN = 10  # real text averages 3 to 5 visible characters per word piece

_PARAGRAPH_BREAK = regex.compile(r"\n\s*\n")
_SENTENCE_END = regex.compile(
    r"[.!?…]+[\"'”’»)\]]*\s+"  # Western: terminator, closing quotes or brackets, whitespace
    r"|[。！？｡．]+[」』”’）》〉\]]*\s*"  # CJK and full-width: no space needed
    r"|\n"  # a line break inside a paragraph (list items, code)
)
_LAST_SPACE = regex.compile(r"(?r)\s+")

_GRAPHEME = regex.compile(r"\X")
# A grapheme cluster longer than this is cut only where it ends (see _grapheme_ceil).
_CLUSTER_LOOKAHEAD = 64


class TokenCounter(Protocol):
    """Counts word pieces the way the embedding model will.

    Attributes:
        max_tokens: The model's window, special tokens included.
    """

    max_tokens: int

    def count(self, texts: Sequence[str]) -> list[int]:
        """Return the number of word pieces of each text, without special tokens."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Return the character span of each word piece of ``text``."""
        ...


class WordPieceCounter:
    """A ``TokenCounter`` backed by the model's own ``tokenizer.json``.

    The file's truncation (128 for all-MiniLM-L6-v2) and padding are switched off: a
    counter that truncates reports that everything fits.
    """

    def __init__(self, tokenizer_json: Path, max_tokens: int) -> None:
        """Load the tokenizer.

        Args:
            tokenizer_json: The model's ``tokenizer.json``.
            max_tokens: The model's window, special tokens included (256 for MiniLM).

        Raises:
            EmbedderError: The file cannot be loaded.
        """
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:
            raise EmbedderError(
                f"cannot load the tokenizer {tokenizer_json}: {exc}; reinstall the model package"
            ) from exc
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        """Return the number of word pieces of each text, without special tokens."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Return the character span of each word piece of ``text``."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


@dataclass(frozen=True)
class Chunk:
    """One piece of a note, ready to embed and store.

    Attributes:
        heading: The section's heading path joined with " > " ("" before any heading).
        text: The chunk's body text, shown to users and stored as the document.
        embed_text: Exactly what is embedded: the context line, a blank line, ``text``.
    """

    heading: str
    text: str
    embed_text: str


@dataclass(frozen=True)
class _Piece:
    text: str
    size: int  # see _sizes
    starts_paragraph: bool
    cut_in_word: bool = False


@dataclass(frozen=True)
class _Context:
    line: str
    budget: int  # word pieces left for the body
    exact: bool  # False once shortened: a cut inside a word may change its count


def chunk_note(note: ParsedNote, counter: TokenCounter, *, target_tokens: int = 200) -> list[Chunk]:
    """Cut a note into chunks that each fit the model's window (see the module docstring).

    Args:
        note: The parsed note.
        counter: Counts word pieces as the embedding model does.
        target_tokens: Body size to aim for, in word pieces; capped by the window.

    Returns:
        The chunks in document order; empty if the note has no sections.

    Raises:
        ValueError: The counter's window cannot hold even one word piece.
    """
    window = counter.max_tokens - SPECIAL_TOKENS
    if window < 1:
        raise ValueError(f"max_tokens {counter.max_tokens} leaves no room for text")
    body_budget = max(1, min(target_tokens, window))
    chunks: list[Chunk] = []
    unsure: list[int] = []  # chunks whose size is not known exactly yet
    contexts = _contexts(note, counter, window, body_budget)
    packed = _pack([s.text for s in note.sections], [c.budget for c in contexts], counter)
    for section, context, texts in zip(note.sections, contexts, packed, strict=True):
        heading = " > ".join(section.headings)
        for text, exact in texts:
            if not (exact and context.exact):
                unsure.append(len(chunks))
            chunks.append(_chunk(heading, context.line, text))
    chunks = _enforce_window(chunks, unsure, counter, window)
    logger.debug("chunked %r: %d sections, %d chunks", note.title, len(note.sections), len(chunks))
    return chunks


def _chunk(heading: str, context: str, text: str) -> Chunk:
    """Build a chunk, prefixing the context line to what is embedded."""
    return Chunk(heading, text, f"{context}\n\n{text}" if context else text)


def _context_line(title: str, headings: Sequence[str]) -> str:
    """Join title and heading path with " > ", not repeating a title the path starts with."""
    parts = list(headings)
    if title and not (parts and parts[0] == title):
        parts.insert(0, title)
    return " > ".join(parts)


def _contexts(
    note: ParsedNote, counter: TokenCounter, window: int, body_budget: int
) -> list[_Context]:
    """Return each section's context line and body budget; shorten absurd context lines."""
    lines = [_context_line(note.title, s.headings) for s in note.sections]
    floor = min(body_budget, window // 2)
    contexts = []
    for line, tokens in zip(lines, counter.count(lines), strict=True):
        if tokens <= window - floor:
            contexts.append(_Context(line, min(body_budget, window - tokens), exact=True))
            continue
        starts = [start for start, _ in counter.offsets(line)]
        cut = _cut_point(line, starts, 0, window - floor, 0)
        contexts.append(_Context(line[:cut].rstrip(), floor, exact=False))
    return contexts


def _pack(
    texts: list[str], budgets: list[int], counter: TokenCounter
) -> list[list[tuple[str, bool]]]:
    """Pack each section's text into texts of at most its budget, counting in one batch.

    Returns:
        Per section, each chunk text and whether its size is exact (see ``_greedy``).
    """
    sections = [
        [_sentences(p) for p in _PARAGRAPH_BREAK.split(t) if not is_blank(p)] for t in texts
    ]
    flat = [s for paras in sections for para in paras for s in para]
    sizes = iter(_sizes(flat, counter.count(flat)))
    packed = []
    for paragraphs, budget in zip(sections, budgets, strict=True):
        pieces: list[_Piece] = []
        for sentences in paragraphs:
            sentence_sizes = [next(sizes) for _ in sentences]
            pieces.extend(_paragraph_pieces(sentences, sentence_sizes, counter, budget))
        packed.append(_greedy(pieces, budget))
    return packed


def _sizes(texts: list[str], counts: list[int]) -> list[int]:
    """Return each text's size: its word pieces, or a tenth of its visible characters.

    The character bound splits runs the tokenizer reads as a single [UNK] (base64, a
    string of emoji, any "word" over 100 characters) into chunks a person can read.
    """
    return [
        max(tokens, -(-len("".join(text.split())) // _MAX_CHARS_PER_TOKEN))
        for text, tokens in zip(texts, counts, strict=True)
    ]


def _sentences(paragraph: str) -> list[str]:
    """Split a paragraph after sentence ends and line breaks, keeping every character."""
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(paragraph)), len(paragraph)]
    return [paragraph[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def _paragraph_pieces(
    sentences: list[str], sizes: list[int], counter: TokenCounter, budget: int
) -> list[_Piece]:
    """Return a paragraph as one piece if it fits, else as sentence-sized pieces."""
    if sum(sizes) <= budget:
        return [_Piece("".join(sentences), sum(sizes), True)]
    pieces: list[_Piece] = []
    for sentence, size in zip(sentences, sizes, strict=True):
        if size <= budget:
            pieces.append(_Piece(sentence, size, not pieces))
            continue
        for part, part_size in _split_by_offsets(sentence, counter, budget):
            pieces.append(_Piece(part, part_size, not pieces, cut_in_word=True))
    return pieces


def _greedy(pieces: list[_Piece], budget: int) -> list[tuple[str, bool]]:
    """Pack pieces in order into texts of at most ``budget`` word pieces.

    Sizes add up across whitespace and punctuation, where the tokenizer splits anyway, so
    a text's size is exact unless it joins a piece cut inside a word to another piece.
    """
    groups: list[list[_Piece]] = [[]]
    total = 0
    for piece in pieces:
        if groups[-1] and total + piece.size > budget:
            groups.append([])
            total = 0
        groups[-1].append(piece)
        total += piece.size
    texts = [(_join(g), len(g) == 1 or not any(p.cut_in_word for p in g)) for g in groups if g]
    return [(text, exact) for text, exact in texts if not is_blank(text)]


def _join(pieces: list[_Piece]) -> str:
    """Join pieces: paragraphs with a blank line, sentences of one paragraph as they were."""
    parts = [pieces[0].text]
    parts.extend(("\n\n" if p.starts_paragraph else "") + p.text for p in pieces[1:])
    return "".join(parts).strip()


def _split_by_offsets(text: str, counter: TokenCounter, budget: int) -> list[tuple[str, int]]:
    """Cut ``text`` into parts of at most ``budget`` in size, each measured on its own.

    A cut inside a word can make the parts tokenise differently from the whole, so every
    part is counted again and cut again if it still does not fit.
    """
    parts = _cut(text, _token_starts(counter.offsets(text)), budget)
    result: list[tuple[str, int]] = []
    for part, size in zip(parts, _sizes(parts, counter.count(parts)), strict=True):
        if size <= budget or len(parts) == 1:
            result.append((part, size))
        else:
            result.extend(_split_by_offsets(part, counter, budget))
    return result


def _token_starts(offsets: list[tuple[int, int]]) -> list[int]:
    """Return where each token starts, treating every 10 characters of a long token as one."""
    starts: list[int] = []
    for start, end in offsets:
        starts.extend(range(start, max(end, start + 1), _MAX_CHARS_PER_TOKEN))
    return starts


def _cut(text: str, starts: list[int], budget: int) -> list[str]:
    """Cut ``text`` so that each part holds at most ``budget`` of the tokens at ``starts``."""
    parts = []
    position, first = 0, 0
    while len(starts) - first > budget:
        cut = _cut_point(text, starts, first, budget, position)
        parts.append(text[position:cut])
        position = cut
        first = bisect.bisect_left(starts, cut, lo=first)
    parts.append(text[position:])
    return [p for p in parts if p]


def _cut_point(text: str, starts: list[int], first: int, budget: int, position: int) -> int:
    """Pick where the part that begins at token ``first`` (char ``position``) ends.

    The part may hold tokens ``first`` to ``first + budget - 1``. Prefer the end of the
    last whitespace run in the second half of that range, else the start of the first
    token that does not fit; then step back to a grapheme boundary.
    """
    hard = starts[first + budget] if first + budget < len(starts) else len(text)
    soft = starts[min(first + budget // 2, len(starts) - 1)]
    space = _LAST_SPACE.search(text, max(soft, position + 1), hard)
    cut = space.end() if space else hard
    safe = _grapheme_floor(text, cut, position)
    if safe > position:
        return safe
    return _grapheme_ceil(text, max(cut, position + 1), position)


def _grapheme_floor(text: str, index: int, lowest: int) -> int:
    """Return the last grapheme-cluster boundary at or before ``index``, ``lowest`` at least."""
    boundary = anchor = _anchor(text, index, lowest)
    endpos = min(len(text), index + _CLUSTER_LOOKAHEAD)
    for match in _GRAPHEME.finditer(text, anchor, endpos):
        if match.end() > index:
            break
        boundary = match.end()
    return boundary


def _grapheme_ceil(text: str, index: int, lowest: int) -> int:
    """Return the first grapheme-cluster boundary at or after ``index``."""
    for match in _GRAPHEME.finditer(text, _anchor(text, index, lowest)):
        if match.end() >= index:
            return match.end()
    return len(text)


def _anchor(text: str, index: int, lowest: int) -> int:
    """Return a cluster start before ``index``: its last whitespace character, else ``lowest``.

    ``lowest`` is always a boundary (a piece start); whitespace starts a cluster unless it
    follows a Prepend character, which no real note puts before a space.
    """
    space = _LAST_SPACE.search(text, lowest, index)
    return space.end() - 1 if space else lowest


def _enforce_window(
    chunks: list[Chunk], unsure: list[int], counter: TokenCounter, window: int
) -> list[Chunk]:
    """Count the ``unsure`` chunks with the real counter; cut again any that overflows."""
    for _ in range(_MAX_REFITS):
        counts = counter.count([chunks[i].embed_text for i in unsure])
        excess = {i: n - window for i, n in zip(unsure, counts, strict=True) if n > window}
        if not excess:
            return chunks
        refitted: list[Chunk] = []
        unsure = []
        for index, chunk in enumerate(chunks):
            if index not in excess:
                refitted.append(chunk)
                continue
            for part in _refit(chunk, excess[index], counter):
                unsure.append(len(refitted))
                refitted.append(part)
        chunks = refitted
    logger.warning("chunks still exceed the %d-token window after re-cutting", window)
    return chunks


def _refit(chunk: Chunk, excess: int, counter: TokenCounter) -> list[Chunk]:
    """Cut an overflowing chunk's text into parts ``excess`` word pieces smaller."""
    budget = max(1, counter.count([chunk.text])[0] - excess)
    logger.debug("re-cutting a chunk %d word pieces over the window", excess)
    context = chunk.embed_text[: -len(chunk.text)].removesuffix("\n\n")
    parts = [part.strip() for part, _ in _split_by_offsets(chunk.text, counter, budget)]
    return [_chunk(chunk.heading, context, part) for part in parts if not is_blank(part)]
