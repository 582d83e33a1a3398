"""App factory: routes, lifespan (engine compile, scheduler), security headers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.config import json_schema
from core.engine import Engine, enable_compilation_cache

from app import presets
from app.api import router as api_router
from app.metrics import Metrics
from app.rooms.routes import router as rooms_router
from app.rooms.routes import serve_dashboard
from app.rooms.service import Rooms
from app.scheduler import Scheduler
from app.settings import Settings
from app.ws import serve_session

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("nnplay")


def _reply_to_session(session, msg: dict) -> None:
    """Deliver a scheduler-initiated message (e.g. the idle-pause notice) to the session's socket."""
    send = getattr(session, "reply", None)
    if send is not None:
        send(msg)


class AppState:
    """Everything one app instance owns (no module-level mutable state)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.engine = Engine(settings.limits)
        # Batched sizes join the scheduler only once compiled (in the background after ready).
        self.scheduler = Scheduler(self.engine, self.metrics, frame_rate=settings.frame_rate,
                                   idle_pause_s=settings.idle_pause_s, reply=_reply_to_session,
                                   threads=settings.scheduler_threads, min_epochs_per_s=settings.min_epochs_per_s,
                                   min_frame_rate=settings.min_frame_rate,
                                   batch_policy=settings.scheduler_batch_policy)
        self.sessions: dict = {}
        self.per_ip: dict[str, int] = {}
        self.next_id = 0
        self.ready = threading.Event()
        self.warmup_seconds: float | None = None
        self.presets = presets.validated()
        self.closing = False
        self.rooms: Rooms | None = None

    def warm(self) -> None:
        """Load the programs a default session needs, then report ready when every other
        single-session program only has to be loaded (about a second each; a session that
        needs one sooner waits for it), else once they are all compiled. Then each batched
        size: the scheduler starts batching a size once it is compiled, so nothing compiles
        later."""
        t = time.perf_counter()
        if self.engine.warmup_first():
            self._set_ready(t)
        self.engine.warmup(background=self.ready.is_set())
        if not self.ready.is_set():
            self._set_ready(t)
        log.info("single-session programs loaded after %.1f s", time.perf_counter() - t)
        for size in sorted(b for b in self.settings.warmup_sessions if b > 1):
            if self.closing:
                return
            try:
                self.engine.warmup(batched_sizes=(size,), singles=False, background=True)
            except Exception:  # the server still works one session at a time
                log.exception("batched size %d failed to compile", size)
                continue
            self.scheduler.batched_sizes = tuple(sorted(set(self.scheduler.batched_sizes) | {size}))
            log.info("batched size %d ready after %.1f s", size, time.perf_counter() - t)

    def _set_ready(self, t: float) -> None:
        self.warmup_seconds = time.perf_counter() - t
        self.ready.set()
        log.info("engine ready in %.1f s", self.warmup_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        enable_compilation_cache(settings.jax_cache)
        state = AppState(settings)
        app.state.nn = state
        # Rooms first: a database or Redis that cannot be reached fails the start, loudly.
        state.rooms = Rooms(settings)
        state.rooms.presets = state.presets
        await state.rooms.start()
        warm = asyncio.get_running_loop().run_in_executor(None, state.warm)
        state.scheduler.start()
        try:
            yield
        finally:
            state.closing = True
            state.scheduler.stop()
            await state.rooms.close()
            if not warm.done():
                await warm

    app = FastAPI(title="nnplay", version="0.1.0", lifespan=lifespan)
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    app.include_router(api_router)
    app.include_router(rooms_router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's default handler echoes the input, and a bare NaN/Infinity body then fails to
        # render (JSON has no NaN): a 500 with a traceback in the log. Name the problem, not the input.
        detail = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    def secure(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            f"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; frame-ancestors {settings.frame_ancestors}"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        return secure(await call_next(request))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        # Starlette's error middleware sends this response outside every other middleware:
        # it gets the same headers here, and names nothing about the failure.
        return secure(PlainTextResponse("Internal Server Error", status_code=500))

    @app.get("/", include_in_schema=False)
    async def index(request: Request):
        return templates.TemplateResponse(request, "index.html", {"version": app.version})

    @app.get("/classroom", include_in_schema=False)
    async def classroom(request: Request):
        return templates.TemplateResponse(request, "classroom.html", {"version": app.version})

    @app.get("/healthz")
    async def healthz(request: Request):
        st: AppState = request.app.state.nn
        ready = st.ready.is_set()
        body = {"status": "ok" if ready else "warming up", "ready": ready, "sessions": len(st.sessions),
                "warmup_seconds": st.warmup_seconds, "batched_sizes": list(st.scheduler.batched_sizes)}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/api/schema")
    async def schema():
        return json_schema()

    @app.get("/api/presets")
    async def get_presets(request: Request):
        return request.app.state.nn.presets

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request):
        return Response(request.app.state.nn.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await serve_session(websocket, websocket.app.state.nn)

    @app.websocket("/ws/room/{code}")
    async def ws_room(websocket: WebSocket, code: str):
        await serve_dashboard(websocket, code, websocket.app.state.nn)

    return app
