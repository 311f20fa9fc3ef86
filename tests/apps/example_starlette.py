# example_starlette.py: run with  hypercorn --worker-class trio example_starlette:app
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from workerless import WorkerlessMiddleware

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


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def fragment(request: Request) -> HTMLResponse:
    await trio.sleep(1)  # a third-party API, a heavy query
    return HTMLResponse(f"<p>result for {request.path_params['name']}</p>")


routes = [Route("/", index), Route("/fragment/{name}", fragment)]
app = WorkerlessMiddleware(Starlette(routes=routes), routes=["/fragment/*"], ttl=60, deadline=5.0)
