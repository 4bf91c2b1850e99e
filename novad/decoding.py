"""Turn a note's bytes into text, or refuse them with a reason.

Decoding (``decode_note``) tries these rules in order; each note gets exactly one outcome:

1. A UTF-8 byte-order mark (EF BB BF) is stripped and the rest is read as UTF-8.
2. A UTF-16 byte-order mark (FF FE or FE FF) makes the note UTF-16; it is decoded with a
   warning, since Nova stores and shows UTF-8.
3. A file that starts with a known binary signature (PNG, JPEG, GIF, PDF, ZIP, gzip, ...) or
   that contains a NUL byte anywhere (the whole file is scanned, not a prefix) is skipped
   with a reason. Short prefixes that real text can start with ("BM", "MZ", "ID3") are not
   signatures. A UTF-16 file without a byte-order mark has NUL bytes, so it is skipped too:
   guessing its byte order would be a heuristic.
4. Valid UTF-8 is used as is.
5. Invalid UTF-8 that holds no valid multi-byte UTF-8 sequence at all, and that cp1252
   decodes strictly, was most likely written by a Windows editor: it is read as cp1252,
   with a warning.
6. Anything else is read as UTF-8 with each bad byte replaced by U+FFFD, with a warning
   that says how many bytes were replaced. The note stays searchable, minus the damage.

After decoding, CRLF and bare CR become LF, and every U+FEFF is dropped (a BOM pasted
into the middle of a file by concatenation would otherwise hide a heading). A note that is
empty or only whitespace is not an error: it decodes, and it has no sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from novad.errors import NoteError

NUL_REASON = "binary content: contains NUL bytes (binary file, or UTF-16 without a byte-order mark)"

# Signatures long or odd enough that no text note starts with them by accident.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive (or an Office/EPUB document)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x7fELF", "ELF executable"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"SQLite format 3\x00", "SQLite database"),
)
_UTF16_BOMS = ((b"\xff\xfe", "little-endian"), (b"\xfe\xff", "big-endian"))
_UTF8_BOM = b"\xef\xbb\xbf"

# Characters the surrogateescape handler produces, one per undecodable byte.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# Any decoded non-ASCII character that is not an escaped byte: a valid multi-byte sequence.
_MULTIBYTE_CHAR = re.compile("[^\x00-\x7f\udc80-\udcff]")


@dataclass(frozen=True)
class DecodedText:
    """A note's text and how it was decoded.

    Attributes:
        text: The text, newlines normalised to ``"\\n"``, byte-order mark removed.
        encoding: ``"utf-8"``, ``"utf-8-sig"``, ``"utf-16"``, ``"cp1252"`` or
            ``"utf-8+replace"``.
        warning: Why a fallback was needed, for the log and ``stats``; ``None`` otherwise.
    """

    text: str
    encoding: str
    warning: str | None


def decode_note(data: bytes) -> DecodedText:
    """Decode a note's bytes by the rules in the module docstring.

    Args:
        data: The file's content.

    Returns:
        The decoded, newline-normalised text and how it was obtained.

    Raises:
        NoteError: The file is binary (a signature or NUL bytes); ``reason`` says which.
    """
    decoded = _decode_utf16(data)
    if decoded is None:
        has_bom = data.startswith(_UTF8_BOM)
        body = data[len(_UTF8_BOM) :] if has_bom else data
        _reject_binary(body)
        decoded = _decode_utf8(body, "utf-8-sig" if has_bom else "utf-8")
    text = decoded.text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    return DecodedText(text, decoded.encoding, decoded.warning)


def _reject_binary(data: bytes) -> None:
    """Raise NoteError if ``data`` starts with a binary signature or holds a NUL byte."""
    for signature, kind in _BINARY_SIGNATURES:
        if data.startswith(signature):
            magic = signature[:4].hex(" ").upper()
            raise NoteError(f"binary content: {kind} (file signature {magic})")
    if b"\x00" in data:
        raise NoteError(NUL_REASON)


def _decode_utf16(data: bytes) -> DecodedText | None:
    """Decode UTF-16 that announces itself with a byte-order mark; None without one.

    The decoding is strict: a binary file that merely starts with FF FE would otherwise
    come out as plausible-looking CJK text and be indexed.
    """
    order = next((name for bom, name in _UTF16_BOMS if data.startswith(bom)), None)
    if order is None:
        return None
    try:
        text = data.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise NoteError(
            f"binary content: starts with a UTF-16 byte-order mark but is not valid UTF-16 "
            f"(bad bytes at offset {exc.start})"
        ) from exc
    if "\x00" in text:
        raise NoteError(NUL_REASON)
    return DecodedText(text, "utf-16", f"UTF-16 ({order} byte-order mark); decoded as UTF-16")


def _decode_utf8(data: bytes, label: str) -> DecodedText:
    """Decode UTF-8, falling back to cp1252 or to U+FFFD replacement (rules 4 to 6)."""
    try:
        return DecodedText(data.decode("utf-8"), label, None)
    except UnicodeDecodeError as exc:
        first_bad = exc.start + (len(_UTF8_BOM) if label == "utf-8-sig" else 0)
    escaped = data.decode("utf-8", "surrogateescape")
    if label == "utf-8" and not _MULTIBYTE_CHAR.search(escaped):
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            warning = f"not valid UTF-8 (first bad byte at offset {first_bad}); decoded as cp1252"
            return DecodedText(text, "cp1252", warning)
    replaced = len(_ESCAPED_BYTE.findall(escaped))
    warning = (
        f"not valid UTF-8 (first bad byte at offset {first_bad}); "
        f"{replaced} byte(s) replaced with U+FFFD"
    )
    return DecodedText(data.decode("utf-8", "replace"), "utf-8+replace", warning)
