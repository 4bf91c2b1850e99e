"""Decoding rules that the parser tests do not cover."""

from __future__ import annotations

import pytest

from novad.decoding import decode_note
from novad.errors import NoteError


def test_binary_that_starts_like_utf16_is_skipped_not_indexed_as_cjk() -> None:
    blob = b"\xff\xfe" + bytes(range(1, 255)) * 8 + b"\x00\xd8"  # ends in a lone surrogate
    with pytest.raises(NoteError, match="not valid UTF-16"):
        decode_note(blob)


def test_utf16_with_a_bom_is_decoded_with_a_warning() -> None:
    decoded = decode_note("\ufeff# Title\r\nBody\r\n".encode("utf-16-le"))
    assert decoded.text == "# Title\nBody\n"
    assert decoded.warning and "UTF-16" in decoded.warning
