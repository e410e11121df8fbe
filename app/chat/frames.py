"""STOMP 1.2 frame codec (https://stomp.github.io/stomp-specification-1.2.html).

Our own because the only maintained Python STOMP server (coilmq) is synchronous and has no
heart-beat negotiation (REAL-COMPONENTS.md). The parser is incremental: a WebSocket message
may carry part of a frame, one frame or several, and bare EOLs between frames are heart-beats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUL = b"\x00"
HEARTBEAT = "\n"

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
# CONNECT and CONNECTED frames are the only ones whose headers are not escaped (spec §Value
# Encoding), so that 1.0 clients can still read the CONNECTED answer.
_RAW_HEADER_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

_ESCAPES = {b"r": b"\r", b"n": b"\n", b"c": b":", b"\\": b"\\"}
_ESCAPE_RE = re.compile(rb"\\(.?)", re.DOTALL)


class FrameError(ValueError):
    """The peer sent bytes that are not a STOMP 1.2 frame: answer ERROR and close."""


@dataclass(slots=True)
class Frame:
    command: str
    # In order; a repeated header keeps only its first value (spec §Repeated Header Entries).
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def _unescape(raw: bytes) -> bytes:
    def sub(match: re.Match[bytes]) -> bytes:
        out = _ESCAPES.get(match.group(1))
        if out is None:  # the spec makes an undefined escape a fatal protocol error
            raise FrameError(f"undefined escape sequence {match.group(0)!r} in a header")
        return out

    return _ESCAPE_RE.sub(sub, raw)


def encode(frame: Frame) -> bytes:
    raw = frame.command in _RAW_HEADER_COMMANDS
    lines = [frame.command]
    for name, value in frame.headers.items():
        lines.append(f"{name}:{value}" if raw else f"{escape(name)}:{escape(value)}")
    if frame.body and "content-length" not in frame.headers:
        lines.append(f"content-length:{len(frame.body)}")
    return ("\n".join(lines) + "\n\n").encode() + frame.body + NUL


class FrameParser:
    """Feed bytes in, get complete frames (and `None` for each heart-beat) out."""

    def __init__(self, *, max_frame_bytes: int, max_headers: int = 64) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_headers = max_headers
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame | None]:
        self._buffer += data
        out: list[Frame | None] = []
        while True:
            item = self._next()
            if item is _INCOMPLETE:
                break
            out.append(item)  # type: ignore[arg-type]
        if len(self._buffer) > self.max_frame_bytes:
            raise FrameError(f"frame larger than {self.max_frame_bytes} bytes")
        return out

    def _next(self) -> Frame | object | None:
        buf = self._buffer
        # EOLs between frames are heart-beats (\n or \r\n).
        if buf[:1] == b"\n":
            del buf[:1]
            return None
        if buf[:2] == b"\r\n":
            del buf[:2]
            return None
        if buf[:1] == b"\r":
            if len(buf) == 1:
                return _INCOMPLETE
            raise FrameError("a bare CR is not an end of line")
        end = buf.find(b"\n\n")
        end_crlf = buf.find(b"\r\n\r\n")
        # The header block ends at the first blank line, whichever EOL style reaches it first;
        # a mixed "\n\r\n" is also a blank line.
        candidates = [
            (i, n) for i, n in ((end, 2), (end_crlf, 4), (buf.find(b"\n\r\n"), 3)) if i >= 0
        ]
        if not candidates:
            if NUL in buf:
                raise FrameError("frame ended before its headers were terminated by a blank line")
            return _INCOMPLETE
        head_end, sep = min(candidates)
        if NUL in buf[:head_end]:
            raise FrameError("NUL byte inside the command or headers")
        frame = self._head(bytes(buf[:head_end]))
        body_start = head_end + sep
        length_header = frame.headers.get("content-length")
        if length_header is not None:
            if not length_header.isdigit():
                raise FrameError(f"content-length {length_header!r} is not a byte count")
            length = int(length_header)
            if length > self.max_frame_bytes:
                raise FrameError(f"frame larger than {self.max_frame_bytes} bytes")
            if len(buf) < body_start + length + 1:
                return _INCOMPLETE
            if buf[body_start + length : body_start + length + 1] != NUL:
                raise FrameError("content-length bytes are not followed by a NUL")
            frame.body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length + 1]
        else:
            nul = buf.find(NUL, body_start)
            if nul < 0:
                return _INCOMPLETE
            if nul > self.max_frame_bytes:
                raise FrameError(f"frame larger than {self.max_frame_bytes} bytes")
            frame.body = bytes(buf[body_start:nul])
            del buf[: nul + 1]
        return frame

    def _head(self, head: bytes) -> Frame:
        lines = head.split(b"\n")
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        try:
            command = lines[0].decode("ascii")
        except UnicodeDecodeError:
            raise FrameError("the command is not ASCII") from None
        if command not in CLIENT_COMMANDS:
            raise FrameError(f"unknown command {command[:40]!r}")
        if len(lines) - 1 > self.max_headers:
            raise FrameError(f"more than {self.max_headers} headers")
        raw = command in _RAW_HEADER_COMMANDS
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name:
                raise FrameError(f"header line {line[:40]!r} has no name:value form")
            try:
                key = (name if raw else _unescape(name)).decode()
                text = (value if raw else _unescape(value)).decode()
            except UnicodeDecodeError:
                raise FrameError("a header is not UTF-8") from None
            headers.setdefault(key, text)
        return Frame(command, headers)


_INCOMPLETE = object()
