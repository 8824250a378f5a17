"""Checks of raw messages against RFC 5322 and RFC 2047 with the standard library's parser."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from email.header import decode_header, make_header
from email.parser import BytesParser

ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def strict(raw: bytes) -> email.message.EmailMessage:
    parsed = BytesParser(policy=email.policy.strict).parsebytes(raw)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def display_name(raw: bytes) -> str:
    """The From display name as RFC 2047 §6.2 reads it.

    Encoded-words are decoded with `decode_header`, which ignores the whitespace between
    adjacent encoded-words as §6.2 says; the header registry's address parser puts a space
    there instead, so it is used only for plain (quoted or atom) names.
    """
    value = email.message_from_bytes(raw)["From"]
    if "=?" in value:
        return str(make_header(decode_header(value))).rpartition(" <")[0]
    return str(strict(raw)["From"].addresses[0].display_name)


def assert_folded(raw: bytes) -> None:
    """Every header line at most 78 characters, every encoded-word at most 75 (RFC 5322 §2.1.1,
    RFC 2047 §2), and nothing the strict parser finds fault with."""
    header_section = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    for line in header_section.split("\r\n"):
        assert len(line) <= 78, line
        for word in ENCODED_WORD.findall(line):
            assert len(word) <= 75, word
    parsed = strict(raw)
    for name in ("From", "To", "Subject"):
        assert parsed[name].defects == (), (name, parsed[name].defects)
