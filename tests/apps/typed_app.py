"""A typed app using workerless as users would; tests/test_typing.py runs mypy --strict on it."""

from __future__ import annotations

from quart import Request
from quart_trio import QuartTrio

from workerless import Cacher, Hit, MemoryStore, Workerless
from workerless.testing import capture_events

app = QuartTrio(__name__)
workerless = Workerless(app, ttl=60.0)


def per_user(request: Request) -> str:
    return f"/greeting?user={request.args.get('user', '')}"


@workerless.fragment("/greeting/<name>", deadline=5.0, key=per_user)
async def greeting(name: str) -> str:
    return f"<p>hello {name}</p>"


@workerless.fragment("/count/<int:n>")
def count(n: int) -> tuple[str, int]:
    return f"<p>{n}</p>", 200


async def use_them() -> None:
    # The decorated views keep their signatures.
    html: str = await greeting("ada")
    body, status = count(3)
    cacher: Cacher[int] = Cacher(MemoryStore(), ttl=10.0)
    with capture_events(cacher) as events, capture_events(workerless):
        await workerless.invalidate_key(per_user.__name__ + html + body + str(status))
    hits: list[Hit] = events.of(Hit)
    assert not hits
