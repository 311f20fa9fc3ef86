"""Cache keys for fragment requests: canonical, method-independent, bounded, injective."""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

__all__ = ["MAX_KEY_LENGTH", "bound_key", "canonical_url"]

MAX_KEY_LENGTH = 256
_KEEP = 200  # characters of a long key kept readable before its hash
_SAFE_PATH = "/-._~!$&'()*+,;=:@"
_UNSAFE = frozenset(" #")


@functools.lru_cache(maxsize=4096)  # pure, and on every hit: hot URLs cost one lookup
def canonical_url(raw_path: bytes, query_string: bytes) -> str:
    """The request's path and query string as one ASCII key, whatever bytes they hold.

    The path is percent-decoded then re-encoded the same way every time; the query's fields
    are sorted by name (a stable sort, so the order of repeated names is kept, since apps may
    depend on it).  Two URLs get the same key only if the application sees the same request.
    """
    path = quote(unquote_to_bytes(raw_path), safe=_SAFE_PATH)
    if not query_string:
        return path
    # latin-1 maps every byte to one character and back, so no input can fail to decode.
    fields = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    fields.sort(key=lambda field: field[0])
    return f"{path}?{urlencode(fields, encoding='latin-1', quote_via=quote)}"


@functools.lru_cache(maxsize=4096)
def bound_key(key: str) -> str:
    """``key`` itself if short printable ASCII without ``#``, else a readable head and a hash.

    Only hashed keys contain ``#`` (followed by the SHA-256 of the whole key), so a hashed key
    never equals a plain one, and prefix invalidation still works on the readable head.
    """
    if (
        len(key) <= MAX_KEY_LENGTH
        and key.isascii()
        and key.isprintable()
        and not _UNSAFE & set(key)
    ):
        return key
    encoded = key.encode("utf-8", "surrogatepass")
    head = quote(encoded[:_KEEP], safe=_SAFE_PATH + "?")[:_KEEP]
    return f"{head}#{hashlib.sha256(encoded).hexdigest()}"
