"""create_app(settings, store): the website and its JSON API in one Starlette app.

Every handler is a plain function of a `Ctx` run in a worker thread (the catalog and the model are
synchronous); the async shell here only reads the request body, checks who is asking and the CSRF
token, and turns the result or a PapersiftError into a response: error.html for pages, the one JSON
error shape `{"ok": false, "error", "errors", "status"}` under /api (design.md, principle 6).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from papersift.errors import BadInput, Forbidden, PapersiftError, Unauthorized
from papersift.signing import site_key
from papersift.web import auth
from papersift.web.site import Site, Viewer

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MAX_BODY = 256 * 1024
# Worker threads per process for the synchronous handlers. The work is CPU-bound Python, so threads
# beyond two only fight over the GIL (and with the event loop's thread); two let one compute while the
# other waits on the catalog. Paper pages, 2 workers, 50 clients (bench/web_load.py, idle machine):
# 1 thread 448 req/s p99 254 ms; 2: 504 / 220; 3: 441 / 269; 4: 423 / 278; 8: 438 / 271.
THREADS = 2
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


@dataclass
class Ctx:
    """One request as a handler sees it."""

    site: Site
    request: Request
    params: dict[str, str]
    form: dict[str, Any]
    viewer: Viewer = field(default_factory=Viewer)
    set_cookies: list[tuple[str, str, int | None]] = field(default_factory=list)

    @property
    def user(self):
        return self.viewer.user

    @property
    def client(self) -> str:
        return self.request.client.host if self.request.client else ""

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def f(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        if isinstance(value, list):
            value = value[0] if value else default
        return value if isinstance(value, str) else str(value)

    def f_list(self, name: str) -> list[str]:
        value = self.form.get(name, [])
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    def url(self, path: str) -> str:
        return self.site.base_url.rstrip("/") + path if self.site.base_url else str(self.request.base_url).rstrip("/") + path


def paper_path(ref: str) -> str:
    return "/papers/" + urllib.parse.quote(ref, safe="/.:")


# -- reading the request -------------------------------------------------------------------------

async def _read_body(request: Request, api: bool) -> dict[str, Any]:
    if request.method not in UNSAFE:
        return {}
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise PayloadTooLarge("the request is too large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = await request.body()
        if len(body) > MAX_BODY:
            raise PayloadTooLarge("the request is too large")
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInput(f"the request body is not valid JSON: {e}", hint="send a JSON object") from None
        if not isinstance(data, dict):
            raise BadInput("the request body must be a JSON object")
        return data
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=0, max_fields=200)
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            value = value if isinstance(value, str) else ""
            out[key] = [*out[key], value] if isinstance(out.get(key), list) else ([out[key], value] if key in out else value)
        return out
    if api and ctype:
        raise BadInput(f"unsupported content type {ctype!r}", hint="send application/json")
    return {}


class PayloadTooLarge(PapersiftError):
    status = 413
    hint = f"keep requests under {MAX_BODY // 1024} kB"


def _identify(ctx: Ctx) -> None:
    """Fill ctx.viewer from a Bearer token or the session cookie, and the CSRF token for forms."""
    store, request = ctx.site.store, ctx.request
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = store.token_user(auth.token_hash(header[7:].strip()))
        if user is None:
            raise Unauthorized("that API token is not valid", hint="make a new one on your account page")
        ctx.viewer = Viewer(user, "token")
        return
    session = request.cookies.get(auth.SESSION_COOKIE)
    if session:
        h = auth.token_hash(session)
        user = store.session_user(h)
        if user is not None:
            ctx.viewer = Viewer(user, "session", h)
        else:
            ctx.set_cookies.append((auth.SESSION_COOKIE, "", 0))
    cookie = request.cookies.get(auth.CSRF_COOKIE)
    if not cookie or len(cookie) > 100:
        cookie = secrets.token_urlsafe(24)
        ctx.set_cookies.append((auth.CSRF_COOKIE, cookie, None))
    ctx.viewer.csrf = auth.csrf_token(ctx.site.key, cookie)
    ctx._csrf_cookie = request.cookies.get(auth.CSRF_COOKIE)  # what this request proved it holds


def _check_csrf(ctx: Ctx) -> None:
    if ctx.request.method not in UNSAFE or ctx.viewer.via == "token":
        return
    if ctx.request.url.path in ctx.site.csrf_exempt:  # authorised by a signed token in the link instead
        return
    sent = ctx.request.headers.get(auth.CSRF_HEADER) or ctx.f(auth.CSRF_FIELD)
    if not auth.csrf_ok(ctx.site.key, getattr(ctx, "_csrf_cookie", None), sent):
        raise Forbidden("this form has expired or did not come from this site (missing or wrong CSRF token)",
                        hint="reload the page and submit it again")


# -- responses -----------------------------------------------------------------------------------

def error_json(status: int, message: str, hint: str = "", errors: list | None = None) -> JSONResponse:
    body = {"ok": False, "error": message, "errors": errors if errors is not None else [message], "status": status}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status)


def _finish(ctx: Ctx, response: Response) -> Response:
    for name, value, max_age in ctx.set_cookies:
        if max_age == 0:
            response.delete_cookie(name, path="/", secure=ctx.site.secure_cookies, httponly=True, samesite="lax")
        else:
            response.set_cookie(name, value, max_age=max_age, path="/", secure=ctx.site.secure_cookies,
                                httponly=True, samesite="lax" if name == auth.SESSION_COOKIE else "strict")
    if ctx.viewer.user is not None or ctx.request.method in UNSAFE:
        response.headers.setdefault("cache-control", "private, no-store")
    return response


def endpoint(fn: Callable[[Ctx], Any], api: bool) -> Callable:
    async def run(request: Request) -> Response:
        site: Site = request.app.state.site
        ctx = Ctx(site, request, {**request.query_params, **request.path_params}, {})
        try:
            ctx.form = await _read_body(request, api)

            def work():
                _identify(ctx)
                _check_csrf(ctx)
                return fn(ctx)

            result = await run_in_threadpool(work)
        except PapersiftError as e:
            if not api and e.status == 401 and request.url.path not in ("/login", "/account/delete"):
                # a visitor asked for something that needs an account: log in, then come back
                back = request.url.path if request.method == "GET" else ctx.f("next")
                back = back if back.startswith("/") and not back.startswith("//") else "/"
                return _finish(ctx, RedirectResponse("/login?next=" + urllib.parse.quote(back), 303))
            return _finish(ctx, _error(request, ctx, e.status, e.message, e.hint, api))
        if isinstance(result, Response):
            return _finish(ctx, result)
        if api:
            return _finish(ctx, JSONResponse(result))
        raise TypeError(f"{fn.__name__} returned {type(result).__name__}")
    run.__name__ = fn.__name__
    return run


def _error(request: Request, ctx: Ctx | None, status: int, message: str, hint: str, api: bool) -> Response:
    if api or request.url.path.startswith("/api/"):
        return error_json(status, message, hint)
    site: Site = request.app.state.site
    viewer = ctx.viewer if ctx is not None else Viewer()
    from papersift.web.render import render
    return render(site, request, viewer, "error.html", {"status": status, "message": message, "hint": hint},
                  status=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    messages = {404: "there is no page here", 405: "this address does not take that method"}
    hints = {404: "check the address, or search for the paper", 405: ""}
    ctx = Ctx(request.app.state.site, request, {}, {})
    try:
        await run_in_threadpool(_identify, ctx)
    except PapersiftError:
        pass
    response = _error(request, ctx, exc.status_code, messages.get(exc.status_code, exc.detail),
                      hints.get(exc.status_code, ""), False)
    if exc.status_code == 405 and exc.headers:
        response.headers.update(exc.headers)
    return _finish(ctx, response)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("error serving %s %s", request.method, request.url.path)
    return _error(request, None, 500, "something went wrong on our side", "try again; if it persists, "
                  "the server's log says why", False)


class SecurityHeaders:
    """Pure ASGI middleware: headers on every response, static files and errors included."""

    def __init__(self, app, secure: bool):
        self.app = app
        self.headers = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                        (b"cross-origin-opener-policy", b"same-origin")]
        if secure:
            self.headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in self.headers if h[0] not in present]
            await send(message)
        await self.app(scope, receive, send_with_headers)


def create_app(settings, store=None, discovery=None) -> Starlette:
    """The site over `store` (opened from settings when not given), searching with `discovery`
    (built from settings when not given: this loads the model and the indexes)."""
    from papersift.rank.service import Discovery
    from papersift.store import open_store
    from papersift.web import api, digest_pages, pages

    owned = store is None  # opened here, so closed here when the server stops (a PostgreSQL pool)
    store = store or open_store(settings.resolved_database_url, migrate=True)
    discovery = discovery or Discovery(store, settings.resolved_data_dir, settings.embedder,
                                       api_key=settings.embedder_api_key)
    base_url = (settings.base_url or "").rstrip("/")
    secure = base_url.startswith("https://")
    from papersift.rank.feed import FeedService

    site = Site(settings, store, discovery, site_key(settings, store), base_url, secure)
    site.feed = FeedService(store, discovery)
    routes = [Route(path, endpoint(fn, api=True), methods=methods) for path, fn, methods in api.ROUTES]
    routes += [Route(path, endpoint(fn, api=False), methods=methods)
               for path, fn, methods in [*pages.ROUTES, *digest_pages.ROUTES]]
    site.csrf_exempt = frozenset(digest_pages.CSRF_EXEMPT)
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    @contextlib.asynccontextmanager
    async def lifespan(app):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        store.warm_spelling()  # read in the background: the first typed queries need not wait for it
        yield
        if owned:
            store.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error},
                    lifespan=lifespan)
    app.state.site = site
    app.add_middleware(SecurityHeaders, secure=secure)
    return app
