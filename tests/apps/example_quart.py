# example_quart.py: run with  hypercorn --worker-class trio example_quart:app
import trio
from quart_trio import QuartTrio

from workerless import WorkerlessMiddleware

app = QuartTrio(__name__)
# Plain Quart routes, cached as they are: the middleware wraps the app's ASGI callable.
app.asgi_app = WorkerlessMiddleware(app.asgi_app, routes=["/fragment/*"], ttl=60, deadline=5.0)

PLACEHOLDER = (
    '<div class="wl-fragment" data-fragment="{url}" data-fragment-state="loading">'
    '<span class="wl-spinner" role="status"></span></div>'
)
PAGE = f"""<!doctype html>
<title>Dashboard</title>
<link rel="stylesheet" href="/workerless/static/workerless.css">
<h1>Dashboard</h1>
{PLACEHOLDER.format(url="/fragment/a")}
{PLACEHOLDER.format(url="/fragment/b")}
<script src="/workerless/static/workerless.js" defer></script>
"""


@app.get("/")
async def index() -> str:
    return PAGE


@app.get("/fragment/<name>")
async def fragment(name: str) -> str:
    await trio.sleep(1)  # a third-party API, a heavy query
    return f"<p>result for {name}</p>"
