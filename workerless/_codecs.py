"""Codecs: how values become the bytes a store keeps, and back, validating what they read.

A shared store is input: anything with write access to it can plant bytes under our keys, so
every decoder checks what it reads and raises ValueError for anything it would not have
written itself.  The Cacher treats such a value as a miss and overwrites it.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Protocol, TypeVar

from ._response import CachedResponse, is_private, kept_headers

__all__ = ["Codec", "JSONCodec", "ResponseCodec"]

T = TypeVar("T")

_MAGIC = b"WL1"
_HEADER = struct.Struct("!3sI")
# RFC 9110 section 5.1: a field name is a token; a value has no CR, LF or NUL and fits latin-1.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\r\n\x00]|[^\x00-\xff]")


class Codec(Protocol[T]):
    """Turns values into the bytes a store keeps, and back (raising ValueError on garbage).

    A codec whose values are immutable may say so with a class attribute
    ``immutable_values = True``: the Cacher then decodes a hot entry once, not on every hit.
    """

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class JSONCodec:
    """The default codec: any JSON-serialisable value (never pickle: a shared store is input)."""

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class ResponseCodec:
    """Encodes a CachedResponse as ``WL1`` + length + JSON metadata + raw body bytes.

    Decoding accepts only what encoding could have produced from a cacheable response: a status
    of 100-599, well-formed header names and values, no ``Set-Cookie`` or hop-by-hop header
    (dropped again on read), and no ``Cache-Control: private`` or ``no-store``.  Its values
    are immutable, so a Cacher may hand one decoded value to many callers.
    """

    immutable_values = True

    def encode(self, value: CachedResponse) -> bytes:
        meta = json.dumps([value.status, value.headers], separators=(",", ":")).encode()
        return _HEADER.pack(_MAGIC, len(meta)) + meta + value.body

    def decode(self, data: bytes) -> CachedResponse:
        if len(data) < _HEADER.size:
            raise ValueError("too short for a workerless response")
        magic, length = _HEADER.unpack_from(data)
        start = _HEADER.size
        if magic != _MAGIC or start + length > len(data):
            raise ValueError("not a workerless response")
        meta = json.loads(data[start : start + length])
        if not (isinstance(meta, list) and len(meta) == 2 and isinstance(meta[1], list)):
            raise ValueError("malformed response metadata")
        status, raw_headers = meta
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError(f"invalid status {status!r}")
        headers: list[tuple[str, str]] = []
        for field in raw_headers:
            if not (isinstance(field, list) and len(field) == 2):
                raise ValueError("malformed header field")
            name, value = field
            if not (isinstance(name, str) and isinstance(value, str)):
                raise ValueError("malformed header field")
            if not _FIELD_NAME.match(name) or _BAD_VALUE.search(value):
                raise ValueError(f"invalid header field {name[:40]!r}")
            headers.append((name, value))
        kept = kept_headers(headers)
        if is_private(kept):
            raise ValueError("a private or no-store response")
        return CachedResponse(status, kept, data[start + length :])
