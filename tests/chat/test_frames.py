"""The STOMP 1.2 frame codec on its own: escaping, content-length, EOLs, and rejection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.chat.frames import Frame, FrameError, FrameParser, encode

# Any text but NUL, which STOMP cannot carry in a header (it has no escape for it).
_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
header_name = st.text(_chars, min_size=1, max_size=20).filter(lambda n: n != "content-length")
header_value = st.text(_chars, max_size=30)


def _parser() -> FrameParser:
    return FrameParser(max_frame_bytes=4096)


@given(
    headers=st.dictionaries(header_name, header_value, max_size=5),
    body=st.binary(max_size=200),
    cut=st.integers(min_value=0, max_value=400),
)
def test_encode_then_parse_round_trips_whatever_the_split(
    headers: dict[str, str], body: bytes, cut: int
) -> None:
    """Escaped headers (\\r \\n \\c \\\\), any body (NULs included, via content-length),
    delivered in two arbitrary pieces with heart-beats around."""
    data = b"\n" + encode(Frame("SEND", headers, body)) + b"\r\n"
    cut = min(cut, len(data))
    parser = _parser()
    items = parser.feed(data[:cut]) + parser.feed(data[cut:])
    frames = [i for i in items if i is not None]
    assert len(frames) == 1
    assert items.count(None) == 2
    assert frames[0].body == body
    expected = dict(headers)
    if body:
        expected.setdefault("content-length", str(len(body)))
    assert frames[0].headers == expected


def test_escapes_on_the_wire_and_raw_connect_headers() -> None:
    wire = encode(Frame("MESSAGE", {"a:b": "line\nbreak\\back\rret"}))
    assert wire == b"MESSAGE\na\\cb:line\\nbreak\\\\back\\rret\n\n\x00"
    # CONNECT/CONNECTED headers are not escaped (a password may contain a backslash).
    frames = _parser().feed(b"CONNECT\npasscode:p\\q:r\n\n\x00")
    assert frames[0] is not None and frames[0].headers["passcode"] == "p\\q:r"


def test_repeated_header_keeps_first_and_crlf_lines_and_no_content_length() -> None:
    frames = _parser().feed(b"SEND\r\nx:1\r\nx:2\r\n\r\nhello\x00SEND\n\n\x00")
    assert [(f.headers, f.body) for f in frames if f] == [({"x": "1"}, b"hello"), ({}, b"")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"NOPE\n\n\x00", "unknown command"),
        (b"SEND\nbad\n\n\x00", "no name:value form"),
        (b"SEND\n:v\n\n\x00", "no name:value form"),
        (b"SEND\nk:\\t\n\n\x00", "undefined escape"),
        (b"SEND\nk:trailing\\\n\n\x00", "undefined escape"),
        (b"SEND\ncontent-length:2\n\nabc\x00", "not followed by a NUL"),
        (b"SEND\ncontent-length:-1\n\n\x00", "not a byte count"),
        (b"SEND\ncontent-length:99999\n\n", "larger than"),
        (b"SEND\nk:v\x00\n\n", "NUL byte inside"),
        (b"SEND\x00", "before its headers"),
        (b"\rX", "bare CR"),
        (b"SEND\nk:\xff\n\n\x00", "not UTF-8"),
        (b"S\xc3\x89ND\n\n\x00", "not ASCII"),
        (b"SEND\n" + b"h:v\n" * 65 + b"\n\x00", "more than 64 headers"),
        (b"SEND\n\n" + b"x" * 5000, "larger than"),
    ],
)
def test_bad_frames_raise_frame_error(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        _parser().feed(data)


def test_incomplete_input_waits_for_more() -> None:
    parser = _parser()
    assert parser.feed(b"SEND\ncontent-length:3\n\nab") == []
    assert parser.feed(b"\x00") == []  # the NUL is body byte 3, not the end
    frames = parser.feed(b"\x00")
    assert frames[0] is not None and frames[0].body == b"ab\x00"
