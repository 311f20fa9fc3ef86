# example_fastapi.py: run with  hypercorn --worker-class trio example_fastapi:app
import trio
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from workerless import WorkerlessMiddleware

app = FastAPI()
app.add_middleware(WorkerlessMiddleware, routes=["/fragment/*"], ttl=60, deadline=5.0)

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


async def slow_find(name: str) -> str:
    await trio.sleep(1)  # a third-party API, a heavy query
    return f"result for {name}"


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


@app.get("/fragment/{name}", response_class=HTMLResponse)
async def fragment(name: str) -> str:
    return f"<p>{await slow_find(name)}</p>"
