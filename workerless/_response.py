"""What a fragment's cached response holds, and its byte encoding for any store."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

__all__ = ["CachedResponse", "ResponseCodec"]

# Never stored: hop-by-hop headers, what the server recomputes, and per-client state.
_DROPPED = frozenset(
    {
        "cache-status",
        "connection",
        "content-length",
        "date",
        "keep-alive",
        "proxy-connection",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_MAGIC = b"WL1"
_HEADER = struct.Struct("!3sI")


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """The status, headers and body a fragment view produced (``Set-Cookie`` is never kept)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def build(cls, status: int, headers: list[tuple[str, str]], body: bytes) -> CachedResponse:
        kept = tuple((name, value) for name, value in headers if name.lower() not in _DROPPED)
        return cls(status, kept, body)


class ResponseCodec:
    """Encodes a CachedResponse as ``WL1`` + length + JSON metadata + raw body bytes."""

    def encode(self, value: CachedResponse) -> bytes:
        meta = json.dumps([value.status, value.headers], separators=(",", ":")).encode()
        return _HEADER.pack(_MAGIC, len(meta)) + meta + value.body

    def decode(self, data: bytes) -> CachedResponse:
        magic, length = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a workerless response")
        start = _HEADER.size
        status, headers = json.loads(data[start : start + length])
        return CachedResponse(
            int(status), tuple((str(n), str(v)) for n, v in headers), data[start + length :]
        )
