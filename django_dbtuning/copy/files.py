"""Opening the caller's input file: a text stream for CSV, bytes for PostgreSQL's formats.

Text is decoded by ``io.TextIOWrapper`` with ``newline=""`` (never ``codecs.getreader``,
whose ``readline`` also ends lines at ``\\u2028``, ``\\x85``, ``\\x0c`` and other separators
inside a value), with ``errors="surrogateescape"`` so that an undecodable byte is reported
with its row, line and cell (:func:`undecodable`) instead of a bare
``UnicodeDecodeError`` somewhere ahead of the row being read.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

_CHUNK = 1 << 16


class _Binary(io.RawIOBase):
    """Any object with ``read(n) -> bytes`` as a raw stream that TextIOWrapper accepts.

    Wrapping (rather than handing the caller's object to TextIOWrapper) also means that
    closing or collecting the wrapper never closes the caller's file.
    """

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


class _Encoded(_Binary):
    """An object whose ``read(n)`` returns str, as UTF-8 bytes for a TextIOWrapper.

    Iterating such an object is not safe: Django's ``File.__iter__``, for one, splits
    lines with ``str.splitlines``, which also breaks at ``\u2028`` and friends.
    """

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            text = self.source.read(_CHUNK)
            if not text:
                return 0
            self.pending = text.encode("utf-8", "surrogatepass")
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def open_text(source: Any, encoding: str) -> tuple[Any, list[Callable[[], None]], str]:
    """A text stream over ``source`` (path, text or binary file), its closers, encoding."""
    closers: list[Callable[[], None]] = []
    codec = codecs.lookup(encoding).name
    # utf-8-sig drops a byte order mark at the start (and only there).
    decode_as = "utf-8-sig" if codec == "utf-8" else encoding
    if isinstance(source, str | os.PathLike):
        handle: Any = open(  # noqa: SIM115 - closed by the source's closers
            source, encoding=decode_as, errors="surrogateescape", newline=""
        )
        closers.append(handle.close)
        return handle, closers, encoding
    if isinstance(source, io.TextIOBase):
        if isinstance(source, io.TextIOWrapper):
            untranslated(source)
            # surrogateescape lets an undecodable byte be named by its row.
            with contextlib.suppress(ValueError, io.UnsupportedOperation):
                source.reconfigure(errors="surrogateescape")
        return source, closers, getattr(source, "encoding", None) or encoding
    if not hasattr(source, "read"):  # pragma: no cover - guarded by the caller
        raise TypeError(f"cannot read CSV from {type(source).__name__}")
    probe = source.read(0)
    if isinstance(probe, bytes | bytearray):
        raw: io.RawIOBase = _Binary(source)
        errors = "surrogateescape"
    else:  # read() returns str: already decoded, only the lines are ours to find
        raw, decode_as, errors = _Encoded(source), "utf-8", "surrogatepass"
    handle = io.TextIOWrapper(
        io.BufferedReader(raw), encoding=decode_as, errors=errors, newline=""
    )

    def detach() -> None:
        with contextlib.suppress(ValueError):
            handle.detach()

    closers.append(detach)
    return handle, closers, encoding


_TRANSLATING = (
    "cannot read this text file as CSV exactly: it has been read from already and "
    'cannot be switched to newline="" ({why}), so "\\r\\n" inside a quoted value '
    'would become "\\n"; open it with open(path, newline="") before reading from '
    "it, or pass the path or a file opened in binary mode ('rb')"
)


def untranslated(source: io.TextIOWrapper) -> None:
    """Make the caller's text file read newlines as they are (csv's ``newline=""``).

    A file opened with the default ``newline=None`` turns ``"\r\n"`` and ``"\r"``
    into ``"\n"`` as it reads, inside quoted values too. ``reconfigure(newline="")``
    is allowed only before the first read. After one (the caller skipped a preamble
    line), the file is moved back to where its reader stands, which drops what it had
    decoded ahead, and switched there: ``seek(tell())`` restores the exact position, and
    when that position is a plain byte offset (the upper bits of CPython's cookie,
    decoder flags and bytes to re-feed, are zero) and the codec's decoder starts in the
    state ``(b"", 0)``, the rest decodes from there exactly as a fresh reader would.
    Anything else (a pipe, a file being iterated, a stateful codec such as utf-16 or
    utf-8-sig) is refused: the load could not tell what the translation changed.
    """
    try:
        source.reconfigure(newline="")
        return
    except (ValueError, io.UnsupportedOperation):
        pass
    if not source.seekable():
        raise ValueError(_TRANSLATING.format(why="it is not seekable"))
    try:
        cookie = source.tell()
    except OSError:
        raise ValueError(
            _TRANSLATING.format(why="it is being iterated, so tell() is disabled")
        ) from None
    try:
        fresh = codecs.getincrementaldecoder(source.encoding)().getstate()
    except LookupError:  # pragma: no cover - the file decodes with it already
        fresh = None
    if cookie >> 64 or fresh != (b"", 0):
        why = f"its {source.encoding} decoder holds a state at this position"
        raise ValueError(_TRANSLATING.format(why=why))
    source.seek(cookie)
    source.reconfigure(newline="")


def undecodable(text: str) -> int:
    """The index of the first byte that could not be decoded (a lone surrogate), or -1."""
    if text.isascii():
        return -1
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return int(exc.start)
    return -1


def open_binary(source: Any) -> tuple[Any, list[Callable[[], None]]]:
    if isinstance(source, str | os.PathLike):
        handle = open(source, "rb")  # noqa: SIM115 - closed by the closers
        return handle, [handle.close]
    if isinstance(source, io.TextIOBase) or not isinstance(source.read(0), bytes):
        raise TypeError(
            "format='text' and 'binary' read bytes: open the file in binary mode "
            "('rb') or pass its path"
        )
    return source, []


def read_header(handle: Any, delimiter: str, encoding: str) -> tuple[list[str], bytes]:
    """The column names of a text-format header line, and the bytes read after it."""
    buffered = b""
    while b"\n" not in buffered:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        buffered += chunk
    line, newline, rest = buffered.partition(b"\n")
    if not line and not newline:
        raise ValueError("the file is empty: expected a header line")
    try:
        text = line.decode(encoding).removeprefix("\ufeff").removesuffix("\r")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the header line cannot be decoded as {encoding}: {exc.reason}"
        ) from None
    return text.split(delimiter), rest


def file_chunks(handle: Any, first: bytes, encoding: str) -> Iterator[bytes]:
    """The file's bytes as UTF-8 (the connection's encoding), in chunks."""
    decoder = None
    if codecs.lookup(encoding).name != "utf-8":
        decoder = codecs.getincrementaldecoder(encoding)()
    data = first
    while True:
        if data:
            yield data if decoder is None else decoder.decode(data).encode()
        data = handle.read(_CHUNK)
        if not data:
            if decoder is not None:
                tail = decoder.decode(b"", final=True).encode()
                if tail:
                    yield tail
            return
