"""Cache keys: method-independent, canonical, bounded, and one per distinct URL."""

from __future__ import annotations

import itertools

from workerless._http import request_header
from workerless._keys import MAX_KEY_LENGTH, bound_key, canonical_url

ODD = [
    (b"/a", b""),
    (b"/a", b"x=1"),
    (b"/a", b"x=1&y=2"),
    (b"/a", b"x=2&x=1"),
    (b"/a", b"x=1&x=2"),
    (b"/a", b"x=0"),
    (b"/a", b"x="),
    (b"/a", b"x=%00"),
    (b"/a", b"x=%FF"),
    (b"/a", b"%FF=x"),
    (b"/a%00", b""),
    (b"/a%FF", b""),
    (b"/\xc3\xa9", b""),
    (b"/a%20b", b""),
    (b"/a%2Fb", b""),
    (b"/a#b", b""),
    (b"/a", b"q=%23"),
    (b"/" + b"z" * 5000, b""),
    (b"/" + b"z" * 4999 + b"y", b""),
    (b"/a", b"q=" + b"%E2%9C%93" * 1000),
    (b"/a", b"q=" + b"%E2%9C%93" * 999 + b"x"),
]


def test_query_order_is_canonical() -> None:
    """Fields in another order give the same key; repeated fields keep their order."""
    assert canonical_url(b"/a", b"b=2&a=1") == canonical_url(b"/a", b"a=1&b=2") == "/a?a=1&b=2"
    assert canonical_url(b"/a", b"x=2&x=1") != canonical_url(b"/a", b"x=1&x=2")


def test_percent_encoding_is_canonical() -> None:
    """Encoded and plain spellings of the same character give the same key."""
    assert canonical_url(b"/%61", b"") == canonical_url(b"/a", b"")
    assert canonical_url(b"/\xc3\xa9", b"") == canonical_url(b"/%C3%A9", b"") == "/%C3%A9"


def test_distinct_urls_never_collide() -> None:
    """Every distinct request in a set of odd URLs gets its own bounded key."""
    keys = [bound_key(canonical_url(path, query)) for path, query in ODD]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert len(key) <= MAX_KEY_LENGTH + 65
        assert key.isascii() and key.isprintable() and " " not in key


def test_bound_key_keeps_short_keys_and_hashes_the_rest() -> None:
    """Short printable keys stay readable; long, non-ASCII or '#' keys get a hashed form."""
    assert bound_key("/fragment/a?x=1") == "/fragment/a?x=1"
    long = bound_key("/x" * 500)
    assert long.startswith("/x/x") and "#" in long
    assert bound_key("a#b") != "a#b"
    for a, b in itertools.combinations(["a#b", "a%23b", "é", "%C3%A9", "a b", "a%20b"], 2):
        assert bound_key(a) != bound_key(b)


def test_request_header_reads_the_first_value_whatever_the_raw_case() -> None:
    """request_header gives a header's first value, its raw ASGI name in any case, for the
    names a hit reads and any other, and None for an absent one."""
    scope = {
        "headers": [
            (b"HX-Request", b"true"),
            (b"Accept-Language", b"fr"),
            (b"hx-request", b"false"),
            (b"accept-language", b"en"),
        ]
    }
    assert request_header(scope, "hx-request") == "true"
    assert request_header(scope, "accept-language") == "fr"
    assert request_header(scope, "authorization") is None
    assert request_header(scope, "turbo-frame") is None
    assert request_header(scope, "x-absent") is None
