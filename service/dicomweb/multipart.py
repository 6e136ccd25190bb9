"""``multipart/related`` bodies of DICOMweb: a streaming reader and a writer.

The reader consumes the request as it arrives (chunked bodies with no Content-Length
included), enforces the upload limit while reading, and yields each part's bytes when the part
is complete, so a large study never sits in memory as one body.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header


class BodyTooLargeError(Exception):
    """The request body passed the upload limit."""


class NotMultipartError(ValueError):
    """The content type is not multipart/related with a boundary."""


class MalformedBodyError(ValueError):
    """The body does not follow its multipart framing (boundary, part headers, closing)."""


@dataclass
class Part:
    """One body part: its headers (lower-case names) and content."""

    headers: dict[str, str] = field(default_factory=dict)
    content: bytearray = field(default_factory=bytearray)

    @property
    def content_type(self) -> str:
        """The part's media type without parameters (lower case)."""
        media, _ = parse_options_header(self.headers.get("content-type", ""))
        return media.decode("latin-1").lower()


def related_boundary(content_type: str) -> tuple[str, str]:
    """The boundary and the ``type`` parameter of a multipart/related content type.

    Raises
    ------
    NotMultipartError
        If the media type is not multipart/related or has no boundary.
    """
    media, params = parse_options_header(content_type)
    boundary = params.get(b"boundary", b"").decode("latin-1")
    if media.lower() != b"multipart/related" or not boundary:
        raise NotMultipartError(
            f'expected multipart/related; type="application/dicom"; boundary=..., '
            f"got {content_type!r}"
        )
    return boundary, params.get(b"type", b"").decode("latin-1").lower()


class _Collector:
    """Parser callbacks that collect complete parts."""

    def __init__(self) -> None:
        self.done: list[Part] = []
        self.current = Part()
        self._field = bytearray()
        self._value = bytearray()

    def on_part_begin(self) -> None:
        self.current = Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.current.headers[name] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.current.content += data[start:end]

    def on_part_end(self) -> None:
        self.done.append(self.current)


async def read_parts(
    chunks: AsyncIterator[bytes], boundary: str, limit: int
) -> AsyncIterator[Part]:
    """Yield each complete part of a streamed multipart body.

    Raises
    ------
    BodyTooLargeError
        As soon as more than ``limit`` bytes have arrived.
    """
    collector = _Collector()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.on_part_begin,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
        },
    )
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise BodyTooLargeError(f"request body exceeds the upload limit of {limit} bytes")
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedBodyError(
                f"multipart body malformed near byte {received - len(chunk) + exc.offset}: {exc}"
            ) from exc
        while collector.done:
            yield collector.done.pop(0)
    parser.finalize()
    while collector.done:
        yield collector.done.pop(0)
    if parser.state is not MultipartState.END:
        # A cut-off body must not pass for a complete one: the sender has to know.
        raise MalformedBodyError(
            f"multipart body ended after {received} bytes without its closing boundary"
        )


def write_related(parts: Iterable[bytes], media_type: str) -> tuple[bytes, str]:
    """A multipart/related body of ``parts``; returns the body and its content type."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for content in parts:
        body += f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode()
        body += content
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f'multipart/related; type="{media_type}"; boundary={boundary}'
