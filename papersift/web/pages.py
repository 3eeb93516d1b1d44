"""The HTML pages. Each handler parses, calls views/actions, and renders; every state change is a
POST from a form carrying the CSRF token, answered with a redirect (post/redirect/get)."""

from __future__ import annotations

import datetime as dt
import urllib.parse

from starlette.responses import PlainTextResponse, RedirectResponse, Response

from papersift.cite import bibtex, bibtex_library
from papersift.errors import BadInput, PapersiftError
from papersift.web import actions, auth, views
from papersift.web.app import Ctx
from papersift.web.feeds import FEED_TYPES, FeedItem, render_atom, render_rss
from papersift.web.render import paper_url, render


def _page(ctx: Ctx, template: str, status: int = 200, **context) -> Response:
    return render(ctx.site, ctx.request, ctx.viewer, template, context, status)


def _back(ctx: Ctx, default: str = "/") -> RedirectResponse:
    """Where a form sends the reader after it is done: `next` when it is a path on this site."""
    target = ctx.f("next") or ctx.q("next") or default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = default
    return RedirectResponse(target, 303)


def _log_in(ctx: Ctx, token: str) -> None:
    ctx.set_cookies.append((auth.SESSION_COOKIE, token, ctx.site.session_days * 86400))


def _page_number(ctx: Ctx) -> int:
    return views.parse_int(ctx.q("page"), "page", 1, 1, views.MAX_PAGE)


# -- lists ---------------------------------------------------------------------------------------

def _listing(ctx: Ctx, window: str, category: str | None = None) -> Response:
    day = views.parse_date(ctx.q("date"))
    listing = views.trending_list(ctx.site, ctx.user, window, day, category or ctx.q("category") or None,
                                  _page_number(ctx))
    return _page(ctx, "list.html", listing=listing)


def daily(ctx: Ctx):
    return _listing(ctx, "day")


def weekly(ctx: Ctx):
    return _listing(ctx, "week")


def monthly(ctx: Ctx):
    return _listing(ctx, "month")


def category(ctx: Ctx):
    return _listing(ctx, views.parse_window(ctx.q("window") or "week"), ctx.params["category"])


def search(ctx: Ctx):
    query = (ctx.q("q") or "").strip()
    listing = None
    if query:
        listing = views.search_list(ctx.site, ctx.user, query, category=ctx.q("category"),
                                    since=views.parse_date(ctx.q("since"), "since"),
                                    until=views.parse_date(ctx.q("until"), "until"), author=ctx.q("author"),
                                    page=_page_number(ctx))
    return _page(ctx, "search.html", listing=listing, q=query, category=ctx.q("category") or "",
                 since=ctx.q("since") or "", until=ctx.q("until") or "", author=ctx.q("author") or "")


def author(ctx: Ctx):
    return _page(ctx, "author.html", listing=views.author_list(ctx.site, ctx.user, ctx.params["name"]))


# -- one paper -----------------------------------------------------------------------------------

def paper(ctx: Ctx):
    view = views.paper_view(ctx.site, ctx.user, ctx.params["ref"])
    return _page(ctx, "paper.html", view=view, paper=view.row.paper, bibtex=bibtex(view.row.paper))


def paper_bibtex(ctx: Ctx):
    p = ctx.site.store.get_paper(ctx.params["ref"])
    return PlainTextResponse(bibtex(p), media_type="application/x-bibtex; charset=utf-8")


def paper_mark(ctx: Ctx):
    user = views.require_user(ctx.user)
    kind = ctx.params["kind"]
    on = ctx.f("on", "1") != "0"
    p, _ = actions.mark(ctx.site, user, ctx.params["ref"], kind, on)
    return _back(ctx, paper_url(p.ref))


def paper_collect(ctx: Ctx):
    user = views.require_user(ctx.user)
    cid = ctx.f("collection")
    p, _ = actions.collect(ctx.site, user, ctx.params["ref"], int(cid) if cid.isdigit() else None,
                           ctx.f("new_collection"), on=ctx.f("on", "1") != "0")
    return _back(ctx, paper_url(p.ref))


# -- the reader's feed ---------------------------------------------------------------------------

def for_you(ctx: Ctx, notice: str | None = None, error: str | None = None, status: int = 200):
    user = views.require_user(ctx.user)
    data = views.for_you(ctx.site, user, _page_number(ctx), like=ctx.q("like"))
    return _page(ctx, "for_you.html", status=status, notice=notice, error=error,
                 feed_url=ctx.url(f"/feeds/for-you/{views.feed_token(ctx.site, user)}.atom"), **data)


DONE = {"mute": "Muted: the feed leaves it out from now on.", "unmute": "Unmuted.",
        "reset": "Recommendations reset: they start over from what you do next.",
        "seed": "Feed source changed.", "categories": "Categories saved."}


def for_you_page(ctx: Ctx):
    return for_you(ctx, notice=DONE.get(ctx.q("done") or ""))


def for_you_change(ctx: Ctx):
    user = views.require_user(ctx.user)
    try:
        done = actions.feed_change(ctx.site, user, ctx.form)
    except PapersiftError as e:
        return for_you(ctx, error=e.message, status=e.status)
    return RedirectResponse("/for-you?done=" + done, 303)


def why(ctx: Ctx):
    user = views.require_user(ctx.user)
    return _page(ctx, "why.html", **ctx.site.feed.why(user, ctx.params["ref"]))


def feed_private(ctx: Ctx):
    user = views.feed_owner(ctx.site, ctx.params["token"])
    result = ctx.site.feed.feed(user, limit=50)
    rows = views.rows_for_hits(ctx.site, result.hits, None)
    return _feed(ctx, f"papersift: for {user.username}", "/for-you", f"Recommended for {user.username}", rows)


# -- library and collections ---------------------------------------------------------------------

def library(ctx: Ctx):
    user = views.require_user(ctx.user)
    return _page(ctx, "library.html", **views.library(ctx.site, user))


def library_import(ctx: Ctx):
    user = views.require_user(ctx.user)
    try:
        result = actions.import_library(ctx.site, user, ctx.f("library"))
    except PapersiftError as e:
        return _page(ctx, "library.html", status=e.status, error=e.message, **views.library(ctx.site, user))
    return _page(ctx, "library.html", imported=result, **views.library(ctx.site, user))


def collection(ctx: Ctx):
    user = views.require_user(ctx.user)
    return _page(ctx, "collection.html", **views.collection(ctx.site, user, int(ctx.params["cid"])))


def collection_create(ctx: Ctx):
    user = views.require_user(ctx.user)
    cid = actions.create_collection(ctx.site, user, ctx.f("name"), ctx.f("description"))
    return RedirectResponse(f"/collections/{cid}", 303)


def collection_delete(ctx: Ctx):
    user = views.require_user(ctx.user)
    ctx.site.store.delete_collection(user.id, int(ctx.params["cid"]))
    return RedirectResponse("/library", 303)


# -- accounts ------------------------------------------------------------------------------------

def signup_form(ctx: Ctx):
    return _page(ctx, "signup.html", next=ctx.q("next") or "/")


def signup(ctx: Ctx):
    try:
        _, token = actions.signup(ctx.site, ctx.f("username"), ctx.f("password"), ctx.f("email"), ctx.client)
    except PapersiftError as e:
        return _page(ctx, "signup.html", status=e.status, error=e.message, username=ctx.f("username"),
                     email=ctx.f("email"), next=ctx.f("next") or "/")
    _log_in(ctx, token)
    return _back(ctx)


def login_form(ctx: Ctx):
    return _page(ctx, "login.html", next=ctx.q("next") or "/")


def login(ctx: Ctx):
    try:
        _, token = actions.login(ctx.site, ctx.f("username"), ctx.f("password"), ctx.client)
    except PapersiftError as e:
        return _page(ctx, "login.html", status=e.status, error=e.message, username=ctx.f("username"),
                     next=ctx.f("next") or "/")
    _log_in(ctx, token)
    return _back(ctx)


def logout(ctx: Ctx):
    actions.logout(ctx.site, ctx.viewer.session_hash)
    ctx.set_cookies.append((auth.SESSION_COOKIE, "", 0))
    return RedirectResponse("/", 303)


def account(ctx: Ctx, new_token: str | None = None, error: str | None = None, status: int = 200,
            notice: str | None = None):
    user = views.require_user(ctx.user)
    sub = ctx.site.store.get_subscription(user.email) if user.email else None
    return _page(ctx, "account.html", status=status, tokens=ctx.site.store.api_tokens(user.id),
                 new_token=new_token, subscription=sub, error=error, notice=notice)


def password_change(ctx: Ctx):
    user = views.require_user(ctx.user)
    try:
        ended = actions.change_password(ctx.site, user, ctx.f("current"), ctx.f("new"), ctx.viewer.session_hash)
    except PapersiftError as e:
        return account(ctx, error=e.message, status=e.status)
    others = f"; {ended} other session{'s' if ended != 1 else ''} logged out" if ended else ""
    return account(ctx, notice=f"Password changed{others}.")


def account_page(ctx: Ctx):
    return account(ctx)


def token_create(ctx: Ctx):
    user = views.require_user(ctx.user)
    return account(ctx, new_token=actions.create_token(ctx.site, user, ctx.f("name") or "script"))


def token_delete(ctx: Ctx):
    user = views.require_user(ctx.user)
    ctx.site.store.delete_api_token(user.id, int(ctx.params["tid"]))
    return RedirectResponse("/account", 303)


def export_json(ctx: Ctx):
    from starlette.responses import JSONResponse

    user = views.require_user(ctx.user)
    return JSONResponse(views.export(ctx.site, user), headers={
        "content-disposition": f'attachment; filename="papersift-{user.username}.json"'})


def export_bibtex(ctx: Ctx):
    user = views.require_user(ctx.user)
    return PlainTextResponse(bibtex_library(views.export_papers(ctx.site, user)),
                             media_type="application/x-bibtex; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="papersift-{user.username}.bib"'})


def account_delete(ctx: Ctx):
    user = views.require_user(ctx.user)
    try:
        actions.delete_account(ctx.site, user, ctx.f("password"))
    except PapersiftError as e:
        return account(ctx, error=e.message, status=e.status)
    ctx.set_cookies.append((auth.SESSION_COOKIE, "", 0))
    return RedirectResponse("/?deleted=1", 303)


# -- subscribe -----------------------------------------------------------------------------------

def subscribe_form(ctx: Ctx):
    return _page(ctx, "subscribe.html", email=(ctx.user.email if ctx.user else "") or "", done=False)


def subscribe(ctx: Ctx):
    email = ctx.f("email")
    try:
        actions.subscribe(ctx.site, email, ctx.f("frequency", "daily"), ctx.f("categories").replace(",", " ").split(),
                          ctx.user, ctx.client)
    except BadInput as e:
        return _page(ctx, "subscribe.html", status=400, error=e.message, email=email, done=False)
    return _page(ctx, "subscribe.html", email=email, done=True)


# -- feeds ---------------------------------------------------------------------------------------

def _feed(ctx: Ctx, title: str, page_path: str, description: str, rows) -> Response:
    kind = ctx.params["fmt"]
    if kind not in FEED_TYPES:
        raise BadInput(f"feeds come as .rss or .atom, not .{kind}")
    items = [FeedItem(r.paper, ctx.url(paper_url(r.paper.ref)), r.hit.reason if r.hit else "",
                      r.hit.score if r.hit else None) for r in rows]
    self_url = ctx.url(ctx.request.url.path + ("?" + ctx.request.url.query if ctx.request.url.query else ""))
    now = dt.datetime.now(dt.timezone.utc)
    if kind == "rss":
        body = render_rss(title, ctx.url(page_path), self_url, description, items, now)
    else:
        body = render_atom(title, ctx.url(page_path), self_url, description, items, now)
    return Response(body, media_type=FEED_TYPES[kind], headers={"cache-control": "public, max-age=600"})


def feed_list(ctx: Ctx):
    window = views.parse_window(ctx.params["window"])
    listing = views.trending_list(ctx.site, None, window, None, ctx.q("category"), 1, 50)
    path = {"day": "/", "week": "/weekly", "month": "/monthly"}[window]
    return _feed(ctx, f"papersift: {listing.title.lower()}", path, f"Trending papers, {window}ly", listing.rows)


def feed_category(ctx: Ctx):
    cat = ctx.params["category"]
    listing = views.trending_list(ctx.site, None, "week", None, cat, 1, 50)
    return _feed(ctx, f"papersift: {cat}", f"/categories/{urllib.parse.quote(cat)}", f"Trending in {cat}", listing.rows)


def feed_search(ctx: Ctx):
    query = (ctx.q("q") or "").strip()
    if not query:
        raise BadInput("a search feed needs a query: ?q=…")
    listing = views.search_list(ctx.site, None, query, category=ctx.q("category"), limit=50)
    return _feed(ctx, f"papersift: {query}", "/search?" + urllib.parse.urlencode({"q": query}),
                 f"Papers matching {query!r}", listing.rows)


GET, POST = ["GET"], ["POST"]
ROUTES = [
    ("/", daily, GET), ("/daily", daily, GET), ("/weekly", weekly, GET), ("/monthly", monthly, GET),
    ("/categories/{category}", category, GET), ("/search", search, GET), ("/authors/{name:path}", author, GET),
    ("/papers/{ref:path}/bibtex", paper_bibtex, GET),
    ("/papers/{ref:path}/collect", paper_collect, POST),
    ("/papers/{ref:path}/{kind:str}", paper_mark, POST),
    ("/papers/{ref:path}", paper, GET),
    ("/for-you", for_you_page, GET), ("/for-you", for_you_change, POST), ("/for-you/why/{ref:path}", why, GET),
    ("/feeds/for-you/{token}.{fmt}", feed_private, GET),
    ("/library", library, GET), ("/library/import", library_import, POST), ("/collections", collection_create, POST),
    ("/collections/{cid:int}", collection, GET), ("/collections/{cid:int}/delete", collection_delete, POST),
    ("/signup", signup_form, GET), ("/signup", signup, POST), ("/login", login_form, GET), ("/login", login, POST),
    ("/logout", logout, POST), ("/account", account_page, GET), ("/account/tokens", token_create, POST),
    ("/account/tokens/{tid:int}/delete", token_delete, POST), ("/account/export.json", export_json, GET),
    ("/account/export.bib", export_bibtex, GET), ("/account/delete", account_delete, POST),
    ("/account/password", password_change, POST),
    ("/subscribe", subscribe_form, GET), ("/subscribe", subscribe, POST),
    ("/feeds/search.{fmt}", feed_search, GET), ("/feeds/categories/{category}.{fmt}", feed_category, GET),
    ("/feeds/{window}.{fmt}", feed_list, GET),
]
