"""The JSON API under /api: every page's data, shaped like Hugging Face's papers API where the two
overlap (`/api/daily_papers`, `/api/papers/{id}`, `/api/papers/search`), plus marks, collections
and the reader's account. Scripts authenticate with `Authorization: Bearer <token>`; a browser's
session cookie works too, with the CSRF token in an `X-CSRF-Token` header for changes.
Pagination: `limit` (1–100) and `p` (0-based page, as Hugging Face's API) or `offset`."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from papersift.errors import BadInput
from papersift.models import Paper
from papersift.web import actions, views
from papersift.web.app import Ctx
from papersift.web.openapi import openapi_document
from papersift.web.render import paper_url


def paper_json(ctx: Ctx, paper: Paper, counts: dict | None = None) -> dict:
    counts = counts or {}
    day = paper.submitted or paper.listed
    links = {k: v for k, v in {"page": ctx.url(paper_url(paper.ref)), "abs": paper.abs_url, "pdf": paper.pdf_url,
                               "doi": f"https://doi.org/{paper.doi}" if paper.doi else None,
                               **{k: v for k, v in paper.links.items() if k not in ("abs", "pdf")}}.items() if v}
    return {
        "id": paper.ref, "arxiv_id": paper.arxiv_id, "doi": paper.doi, "title": paper.title, "summary": paper.abstract,
        "authors": [{"name": a} for a in paper.authors], "categories": list(paper.categories),
        "publishedAt": day.isoformat() if day else None,
        "listed": paper.listed.isoformat() if paper.listed else None,
        "updated": paper.updated.isoformat() if paper.updated else None,
        "version": paper.version, "comment": paper.comment, "journal_ref": paper.journal_ref,
        "withdrawn": paper.withdrawn, "links": links,
        "upvotes": counts.get("upvote", 0), "saves": counts.get("save", 0),
        "hf_upvotes": paper.signals.get("hf_upvotes"),
    }


def row_json(ctx: Ctx, row: views.Row) -> dict:
    """A list entry: {"paper": …, "title", "summary", "publishedAt"} as in Hugging Face's daily papers,
    plus our rank reason and score, and the viewer's own marks."""
    p = paper_json(ctx, row.paper, row.counts)
    out = {"paper": p, "title": p["title"], "summary": p["summary"], "publishedAt": p["publishedAt"]}
    if row.hit is not None:
        out.update(score=row.hit.score if row.hit.score != float("inf") else None, reason=row.hit.reason)
    if ctx.user is not None:
        out.update(upvoted=row.upvoted, saved=row.saved)
    return out


def _paging(ctx: Ctx, default: int) -> tuple[int, int]:
    limit = views.parse_int(ctx.q("limit"), "limit", default, 1, views.MAX_LIMIT)
    if ctx.q("offset") not in (None, ""):
        offset = views.parse_int(ctx.q("offset"), "offset", 0, 0, views.MAX_PAGE * views.MAX_LIMIT)
        if offset % limit:
            raise BadInput("offset must be a multiple of limit")
        return offset // limit + 1, limit
    return views.parse_int(ctx.q("p"), "p", 0, 0, views.MAX_PAGE - 1) + 1, limit


def _listing_json(ctx: Ctx, listing: views.Listing) -> Response:
    """A bare list like Hugging Face's, with the page's context in headers (Link: rel=next)."""
    body = [row_json(ctx, r) for r in listing.rows]
    headers = {"x-total-shown": str(len(body))}
    if listing.has_next:
        params = dict(ctx.request.query_params)
        params.pop("offset", None)
        params["p"] = str(listing.page)
        from urllib.parse import urlencode
        headers["link"] = f'<{ctx.url(ctx.request.url.path)}?{urlencode(params)}>; rel="next"'
    return JSONResponse(body, headers=headers)


def daily_papers(ctx: Ctx):
    page, limit = _paging(ctx, views.LIST_LIMIT)
    listing = views.trending_list(ctx.site, ctx.user, views.parse_window(ctx.q("window")), views.parse_date(ctx.q("date")),
                                  ctx.q("category") or None, page, limit)
    return _listing_json(ctx, listing)


def paper(ctx: Ctx):
    p = ctx.site.store.get_paper(ctx.params["ref"])
    row = views.rows_for(ctx.site, [p], [None], ctx.user)[0]
    out = paper_json(ctx, p, row.counts)
    if ctx.user is not None:
        out.update(upvoted=row.upvoted, saved=row.saved)
    return out


def related(ctx: Ctx):
    limit = views.parse_int(ctx.q("limit"), "limit", 10, 1, 50)
    p = ctx.site.store.get_paper(ctx.params["ref"])
    return [row_json(ctx, r) for r in views.rows_for_hits(ctx.site, ctx.site.discovery.related(p.id, k=limit), ctx.user)]


def search(ctx: Ctx):
    query = (ctx.q("q") or "").strip()
    if not query:
        raise BadInput("search needs a query: ?q=…")
    page, limit = _paging(ctx, views.SEARCH_LIMIT)
    listing = views.search_list(ctx.site, ctx.user, query, category=ctx.q("category"),
                                since=views.parse_date(ctx.q("since"), "since"),
                                until=views.parse_date(ctx.q("until"), "until"),
                                author=ctx.q("author"), page=page, limit=limit)
    response = _listing_json(ctx, listing)
    if listing.shown_query:
        response.headers["x-searched-for"] = listing.shown_query.encode("ascii", "replace").decode()
    return response


def author(ctx: Ctx):
    return [row_json(ctx, r) for r in views.author_list(ctx.site, ctx.user, ctx.params["name"]).rows]


def _mark(ctx: Ctx, kind: str):
    user = views.require_user(ctx.user)
    p, counts = actions.mark(ctx.site, user, ctx.params["ref"], kind, ctx.request.method == "POST")
    done = {"upvote": "upvoted", "save": "saved", "dismiss": "dismissed"}[kind]
    return {"ok": True, "id": p.ref, done: ctx.request.method == "POST",
            "upvotes": counts.get("upvote", 0), "saves": counts.get("save", 0)}


def upvote(ctx: Ctx):
    return _mark(ctx, "upvote")


def save(ctx: Ctx):
    return _mark(ctx, "save")


def dismiss(ctx: Ctx):
    return _mark(ctx, "dismiss")


def view(ctx: Ctx):
    actions.view(ctx.site, views.require_user(ctx.user), ctx.params["ref"])
    return {"ok": True}


def _collection_json(ctx: Ctx, c: dict) -> dict:
    return {"id": c["id"], "name": c["name"], "description": c.get("description", ""),
            "papers": c.get("size", 0), "created_at": c.get("created_at")}


def collections(ctx: Ctx):
    user = views.require_user(ctx.user)
    if ctx.request.method == "POST":
        cid = actions.create_collection(ctx.site, user, str(ctx.form.get("name", "")),
                                        str(ctx.form.get("description", "")))
        c = next(c for c in ctx.site.store.collections(user.id) if c["id"] == cid)
        return JSONResponse(_collection_json(ctx, c), status_code=201)
    return [_collection_json(ctx, c) for c in ctx.site.store.collections(user.id)]


def collection(ctx: Ctx):
    user = views.require_user(ctx.user)
    cid = int(ctx.params["cid"])
    if ctx.request.method == "DELETE":
        views.collection(ctx.site, user, cid)  # 404 unless it is the viewer's
        ctx.site.store.delete_collection(user.id, cid)
        return {"ok": True}
    data = views.collection(ctx.site, user, cid)
    return {**_collection_json(ctx, data["collection"]), "items": [row_json(ctx, r) for r in data["rows"]]}


def collection_papers(ctx: Ctx):
    user = views.require_user(ctx.user)
    ref = ctx.params.get("ref") or ctx.form.get("paper")
    if not isinstance(ref, str) or not ref.strip():
        raise BadInput('name the paper: {"paper": "<arXiv id>"}')
    views.collection(ctx.site, user, int(ctx.params["cid"]))
    p, cid = actions.collect(ctx.site, user, ref, int(ctx.params["cid"]), on=ctx.request.method == "POST")
    return {"ok": True, "collection": cid, "paper": p.ref, "in_collection": ctx.request.method == "POST"}


def me(ctx: Ctx):
    user = views.require_user(ctx.user)
    return {"username": user.username, "email": user.email, "created": user.created.isoformat() if user.created else None,
            "via": ctx.viewer.via, "feed_url": ctx.url(f"/feeds/for-you/{views.feed_token(ctx.site, user)}.atom")}


def recommendations(ctx: Ctx):
    user = views.require_user(ctx.user)
    page, limit = _paging(ctx, views.SEARCH_LIMIT)
    data = views.for_you(ctx.site, user, page, limit, like=ctx.q("like"))
    response = _listing_json(ctx, data["listing"])
    response.headers["x-feed-basis"] = data["basis"].encode("ascii", "replace").decode()
    response.headers["x-feed-cold"] = "1" if data["cold"] else "0"
    return response


def why(ctx: Ctx):
    user = views.require_user(ctx.user)
    w = ctx.site.feed.why(user, ctx.params["ref"])
    return {"paper": paper_json(ctx, w["paper"]), "basis": w["basis"], "terms": w["terms"],
            "closest": [{"paper": paper_json(ctx, p), "similarity": round(sim, 4)} for p, sim in w["closest"]]}


def mutes(ctx: Ctx):
    user = views.require_user(ctx.user)
    if ctx.request.method == "POST":
        actions.feed_change(ctx.site, user, {"action": "mute", "kind": ctx.form.get("kind", ""),
                                             "value": ctx.form.get("value", "")})
    elif ctx.request.method == "DELETE":
        actions.feed_change(ctx.site, user, {"action": "unmute", "kind": ctx.params["kind"], "value": ctx.params["value"]})
    return ctx.site.store.mutes(user.id)


def library(ctx: Ctx):
    data = views.library(ctx.site, views.require_user(ctx.user))
    return {"saved": [row_json(ctx, r) for r in data["saved"]], "upvoted": [row_json(ctx, r) for r in data["upvoted"]],
            "collections": [_collection_json(ctx, c) for c in data["collections"]]}


def library_import(ctx: Ctx):
    user = views.require_user(ctx.user)
    text = ctx.form.get("library", "")
    return actions.import_library(ctx.site, user, text if isinstance(text, str) else "")


def me_export(ctx: Ctx):
    return views.export(ctx.site, views.require_user(ctx.user))


def openapi(ctx: Ctx):
    return openapi_document(ctx.url(""))


GET, POST, DELETE = ["GET"], ["POST"], ["DELETE"]
ROUTES = [
    ("/api/daily_papers", daily_papers, GET),
    ("/api/papers/search", search, GET),
    ("/api/papers/{ref:path}/related", related, GET),
    ("/api/papers/{ref:path}/upvote", upvote, POST + DELETE),
    ("/api/papers/{ref:path}/save", save, POST + DELETE),
    ("/api/papers/{ref:path}/dismiss", dismiss, POST + DELETE),
    ("/api/papers/{ref:path}/view", view, POST),
    ("/api/papers/{ref:path}", paper, GET),
    ("/api/authors/{name:path}", author, GET),
    ("/api/collections", collections, GET + POST),
    ("/api/collections/{cid:int}", collection, GET + DELETE),
    ("/api/collections/{cid:int}/papers", collection_papers, POST),
    ("/api/collections/{cid:int}/papers/{ref:path}", collection_papers, DELETE),
    ("/api/recommendations", recommendations, GET),
    ("/api/recommendations/why/{ref:path}", why, GET),
    ("/api/me/mutes", mutes, GET + POST),
    ("/api/me/mutes/{kind}/{value:path}", mutes, DELETE),
    ("/api/library", library, GET),
    ("/api/library/import", library_import, POST),
    ("/api/me", me, GET),
    ("/api/me/export", me_export, GET),
    ("/api/openapi.json", openapi, GET),
]
