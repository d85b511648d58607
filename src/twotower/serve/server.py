"""`twotower serve`: an HTTP API and a search page over one index folder.

    GET /search?q=...&k=10&mode=dense|bm25|hybrid   hits (id, score, text) and the time taken
    GET /health                                      liveness and what is loaded
    GET /                                            the search page (src/twotower/serve/web/)

Every error is a JSON `{"error": ...}` with a 4xx status; a search that waits too long behind
others is a 503, and a failure inside a search is a 500 with a fixed message (the traceback
goes to the server's log, never to the client). The searcher is shared by uvicorn's worker
threads: torch, faiss and bm25s searches only read, and concurrent dense searches of one k
share one pass over the vectors (`twotower.serve.batching`). A new build of the folder (`twotower
index --force`) is loaded beside it and swapped in whole (`twotower.serve.live_index`), noticed
within a second of a request or at once on SIGHUP.
"""

import contextlib
import copy
import logging
import socket
import signal
import threading
import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from twotower.serve.batching import SearchTimeout
from twotower.errors import TwoTowerError
from twotower.serve.live_index import LiveIndex, build_of
from twotower.serve.search import MODES
from twotower.text.tokenizers import words

MAX_K = 1000
MAX_QUERY_CHARS = 10_000  # read at most this much of q; the model keeps far fewer words
MAX_REQUEST_LINE = 512 * 1024  # h11's cap on a request's line and headers: a 100 KB query fits
WEB = resources.files("twotower.serve") / "web"
log = logging.getLogger("twotower.serve.server")


def create_app(index) -> "SearchFirst":
    """The ASGI app over `index`: a `LiveIndex`, or a `Searcher.from_index` served as it is.
    Each request takes the current searcher once and uses only it."""
    live = index if isinstance(index, LiveIndex) else LiveIndex(index)
    app = FastAPI(title="twotower", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"error": "; ".join(_message(e) for e in exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        return _internal_error()

    @app.get("/health")
    def health():
        searcher = live.current()
        manifest = searcher.manifest or {}
        return {"status": "ok", "passages": searcher.size, "modes": list(searcher.modes),
                "index": manifest.get("dense", {}).get("kind"),
                "model_sha256": manifest.get("model", {}).get("sha256"), "build": build_of(searcher)}

    async def search(request: Request):
        """GET /search?q=...&k=10&mode=dense (reached here only by HEAD: `SearchFirst` answers GET)."""
        return await _search(live, request.query_params)

    app.add_route("/search", search, methods=["GET"])

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(WEB / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(WEB)), name="static")
    return SearchFirst(app, live)


class SearchFirst:
    """The ASGI app a server runs: GET /search answered straight away, everything else (the
    page, /health, errors, lifespan) by the FastAPI `app`. Under load, FastAPI's layers
    (middleware, routing, parameter validation) held the GIL about as long as a hybrid
    search itself (py-spy, 1M passages, 32 clients); searches are the server's traffic."""

    def __init__(self, app: FastAPI, live: LiveIndex):
        self.app, self.live = app, live

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/search" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:
            response = await _search(self.live, QueryParams(scope["query_string"]))
        except Exception:  # as the app's own handler does
            response = _internal_error()
        await response(scope, receive, send)


def _internal_error() -> JSONResponse:
    """A failed search's 500: the exception goes to the log, nothing of it into the answer.
    Called while the exception is being handled, so the log line carries its traceback."""
    log.exception("search failed")
    return JSONResponse(status_code=500, content={"error": "internal error: the search failed"})


async def _search(live: LiveIndex, params) -> JSONResponse:
    checked = _search_params(params)
    if isinstance(checked, JSONResponse):
        return checked
    return await run_in_threadpool(_answer, live.current(), *checked)


def _search_params(params) -> tuple[str, int, str] | JSONResponse:
    """(q, k, mode) of a search request, or its 4xx: the messages FastAPI's `Query(...)`
    checks gave before, one line per bad parameter."""
    errors = []
    q = params.get("q")
    if q is None:
        errors.append("q is required")
    k = params.get("k", "10")
    try:
        k = int(k.strip())
    except ValueError:
        errors.append("k: Input should be a valid integer, unable to parse string as an integer")
    else:
        if k < 1:
            errors.append("k: Input should be greater than or equal to 1")
        elif k > MAX_K:
            errors.append(f"k: Input should be less than or equal to {MAX_K}")
    if errors:
        return JSONResponse(status_code=422, content={"error": "; ".join(errors)})
    mode = params.get("mode", "dense")
    if mode not in MODES:
        return JSONResponse(status_code=422, content={
            "error": f"mode {mode!r} is not one of {', '.join(MODES)}", "accepted": list(MODES)})
    if not q.strip():
        return JSONResponse(status_code=400, content={"error": "q is empty: give a query"})
    return q, k, mode


def _answer(searcher, q: str, k: int, mode: str) -> JSONResponse:
    """One search with `searcher` (in a worker thread: it blocks), as its JSON answer."""
    cut, q = len(q) > MAX_QUERY_CHARS, q[:MAX_QUERY_CHARS]
    tokens = words(q)
    if not tokens:
        return JSONResponse(status_code=400, content={
            "error": f"q has no words to search for: {q[:40]!r} holds no letters or digits"})
    query = searcher.truncate(q)
    truncated = cut or len(tokens) > searcher.max_len_query
    started = time.perf_counter()
    try:
        hits = searcher.search(q, k, mode=mode)
    except TwoTowerError as exc:
        return JSONResponse(status_code=400, content={"error": str(exc)})
    except SearchTimeout as exc:  # queued behind a search that did not finish: try again later
        return JSONResponse(status_code=503, content={"error": str(exc)})
    took_ms = (time.perf_counter() - started) * 1000
    # A JSONResponse goes out as it is: FastAPI's jsonable_encoder would walk every hit first.
    return JSONResponse({"query": query, "truncated": truncated, "mode": mode, "k": k,
                         "took_ms": round(took_ms, 2),
                         "hits": [{"rank": h.rank, "id": h.pid, "score": h.score, "text": h.text} for h in hits]})


def _message(error: dict) -> str:
    """One line per invalid parameter, without echoing its value back (a 100 KB k, say)."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "query")
    if error.get("type") == "missing":
        return f"{where} is required"
    return f"{where}: {error.get('msg', 'invalid')}"


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena, up to 8 a core, and
    uvicorn answers from a pool of up to 40 threads: at 1M passages each server process
    kept ~60 MB more in half-empty arenas than with 2 (measured: 183 -> 124 MB of a forked
    worker's own memory after 6,000 requests). Call before the index loads; no-op off glibc."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def reload_on_sighup(live: LiveIndex) -> None:
    """`kill -HUP` makes the server load its folder again, changed or not. The handler only
    starts a thread: the load must not run inside a signal handler, on the event loop's thread."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(
            target=live.check, kwargs={"force": True}, daemon=True).start())


def serve(index, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          access_log: bool = False) -> None:
    """Run the app with uvicorn until interrupted (h11, so the request-size cap applies); our
    log lines (a build swapped in, or one that did not load) go where uvicorn's go."""
    import uvicorn

    live = index if isinstance(index, LiveIndex) else LiveIndex(index)
    reload_on_sighup(live)
    uvicorn.run(create_app(live), **_uvicorn_options(host, port, log_level, access_log))


def serve_workers(live: LiveIndex, workers: int, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info", access_log: bool = False) -> None:
    """`workers` server processes on one port, forked after `live` loaded its folder, so they
    share one copy of the index in memory (`twotower.serve.workers`); `kill -HUP` makes the
    parent load the folder again and replace them one by one."""
    import uvicorn

    from twotower.serve import workers as forked

    forked.forked_device(live.searcher.device.type)
    live.searcher.embed_query("warm up")  # traced once here, and shared by every worker
    options = _uvicorn_options(host, port, log_level, access_log)
    uvicorn.Config(None, **options)  # sets up logging, in the parent too
    sock = forked.bind(host, port)

    def run_worker(searcher, sock) -> None:
        uvicorn.Server(uvicorn.Config(create_app(LiveIndex(searcher)), **options)).run(sockets=[sock])

    forked.Supervisor(live, sock, workers, run_worker).run()


def _uvicorn_options(host: str, port: int, log_level: str, access_log: bool) -> dict:
    """uvicorn's settings. The access log is off unless asked for: a line per request cost ~8%
    of the GIL's time in a server answering ~130 hybrid requests/s over 1M passages."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["twotower"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return dict(host=host, port=port, log_level=log_level, log_config=log_config, access_log=access_log,
                http="twotower.serve.server:NoDelayH11Protocol", h11_max_incomplete_event_size=MAX_REQUEST_LINE,
                server_header=False)


def no_delay(transport) -> None:
    """TCP_NODELAY on a connection's socket. asyncio sets it only on sockets whose protocol
    number is TCP; the socket uvicorn binds for --workers has 0 there, so a keep-alive
    client's next request waited ~40 ms on Nagle and delayed ACKs (5 -> 44 ms p50)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (its request-size cap applies) with `no_delay` on each connection."""

    def connection_made(self, transport) -> None:
        no_delay(transport)
        super().connection_made(transport)
