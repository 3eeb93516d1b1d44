"""The OpenAPI 3.1 document of /api, built from one table so that tests/test_web_api.py can check
that every API route is documented and every documented path exists."""

from __future__ import annotations

from papersift import __version__

_PAGING = [("limit", "integer", "results per page, 1–100"), ("p", "integer", "page number, from 0"),
           ("offset", "integer", "results to skip (a multiple of limit); instead of p")]
_FILTERS = [("category", "string", "arXiv category, e.g. cs.CL"), ("since", "string", "first listed on or after, YYYY-MM-DD"),
            ("until", "string", "first listed on or before, YYYY-MM-DD"), ("author", "string", "exact author name")]
_REF = [("ref", "string", "arXiv id (2401.01234, hep-th/9901001), doi:10.…/…, or #<catalog id>")]

# (path, method, summary, path params, query params, needs login, JSON body fields)
ENDPOINTS = [
    ("/api/daily_papers", "get", "Trending papers of a day, week or month", [],
     [("date", "string", "the window's last day, YYYY-MM-DD (default: the latest day with papers)"),
      ("window", "string", "day (default), week or month"), ("category", "string", "only this arXiv category"),
      *_PAGING], False, None),
    ("/api/papers/search", "get", "Hybrid keyword + semantic search", [],
     [("q", "string", "the query (required)"), *_FILTERS, *_PAGING], False, None),
    ("/api/papers/{ref}", "get", "One paper", _REF, [], False, None),
    ("/api/papers/{ref}/related", "get", "Papers related to one paper, with reasons", _REF,
     [("limit", "integer", "1–50, default 10")], False, None),
    ("/api/papers/{ref}/upvote", "post", "Upvote a paper (once per account)", _REF, [], True, None),
    ("/api/papers/{ref}/upvote", "delete", "Take an upvote back", _REF, [], True, None),
    ("/api/papers/{ref}/save", "post", "Save a paper to your library", _REF, [], True, None),
    ("/api/papers/{ref}/save", "delete", "Remove a paper from your library", _REF, [], True, None),
    ("/api/papers/{ref}/dismiss", "post", "Mark a paper not interesting", _REF, [], True, None),
    ("/api/papers/{ref}/dismiss", "delete", "Undo a dismissal", _REF, [], True, None),
    ("/api/papers/{ref}/view", "post", "Record that you opened a paper", _REF, [], True, None),
    ("/api/authors/{name}", "get", "Papers by an author (exact name)", [("name", "string", "author name")], [], False, None),
    ("/api/collections", "get", "Your collections", [], [], True, None),
    ("/api/collections", "post", "Make a collection", [], [], True, {"name": "string", "description": "string"}),
    ("/api/collections/{cid}", "get", "One of your collections with its papers",
     [("cid", "integer", "collection id")], [], True, None),
    ("/api/collections/{cid}", "delete", "Delete one of your collections", [("cid", "integer", "collection id")],
     [], True, None),
    ("/api/collections/{cid}/papers", "post", "Put a paper in a collection", [("cid", "integer", "collection id")],
     [], True, {"paper": "string"}),
    ("/api/collections/{cid}/papers/{ref}", "delete", "Take a paper out of a collection",
     [("cid", "integer", "collection id"), *_REF], [], True, None),
    ("/api/recommendations", "get", "Your feed: recent papers ranked for you, with reasons (trending while cold)", [],
     [("like", "string", "seed the feed from this paper (more like this)"), *_PAGING], True, None),
    ("/api/recommendations/why/{ref}", "get", "Why a paper is in your feed: your closest papers, shared words",
     _REF, [], True, None),
    ("/api/library", "get", "Your saved and upvoted papers and your collections", [], [], True, None),
    ("/api/library/import", "post", "Import your library (BibTeX, RIS or CSL-JSON text): papers are saved for you",
     [], [], True, {"library": "string"}),
    ("/api/me/mutes", "get", "Your muted keywords, authors and categories", [], [], True, None),
    ("/api/me/mutes", "post", "Mute a keyword, author or category", [], [], True, {"kind": "string", "value": "string"}),
    ("/api/me/mutes/{kind}/{value}", "delete", "Unmute", [("kind", "string", "keyword, author or category"),
                                                          ("value", "string", "what was muted")], [], True, None),
    ("/api/me", "get", "Who you are logged in as, and your private feed's URL", [], [], True, None),
    ("/api/me/export", "get", "Everything papersift holds about you", [], [], True, None),
    ("/api/openapi.json", "get", "This document", [], [], False, None),
]

ERROR = {"type": "object", "required": ["ok", "error", "errors", "status"],
         "properties": {"ok": {"const": False}, "error": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "string"}},
                        "status": {"type": "integer"}, "hint": {"type": "string"}}}
_ERROR_RESPONSE = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation_id(method: str, path: str) -> str:
    return method + "_" + "".join(c if c.isalnum() else "_" for c in path.strip("/")).replace("__", "_").strip("_")


def openapi_document(server: str) -> dict:
    paths: dict = {}
    for path, method, summary, path_params, query, login, body in ENDPOINTS:
        op: dict = {"summary": summary, "operationId": _operation_id(method, path),
                    "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": t}, "description": d}
                                   for n, t, d in path_params]
                    + [{"name": n, "in": "query", "required": n == "q", "schema": {"type": t}, "description": d}
                       for n, t, d in query],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                                  "default": _ERROR_RESPONSE}}
        if body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {k: {"type": v} for k, v in body.items()}}}}}
        if login:
            op["security"] = [{"bearer": []}, {"session": []}]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "papersift API", "version": __version__,
                 "description": "Trending, search, related papers, and a reader's marks and collections. "
                                "Changes need a log-in: an API token (`Authorization: Bearer …`) or a session "
                                "cookie plus `X-CSRF-Token`. Every error has the shape of `Error`."},
        "servers": [{"url": server or "/"}],
        "paths": paths,
        "components": {"schemas": {"Error": ERROR},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "session": {"type": "apiKey", "in": "cookie", "name": "papersift_session"}}},
    }
