"""What each page shows, as data: the HTML pages (pages.py) render it and the JSON API (api.py) returns
it, so every page has a JSON twin by construction. Functions here parse query values, call the
library (rank/, store/) and return plain objects; they never build HTML or responses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from papersift.errors import BadInput, NotFound, Unauthorized
from papersift.models import Hit, Paper, User
from papersift.rank import trending as trending_mod
from papersift.store.fulltext import Filters
from papersift.web.site import Site

WINDOWS = ("day", "week", "month")
MAX_LIMIT = 100
LIST_LIMIT = 30
SEARCH_LIMIT = 20
MAX_PAGE = 1000


@dataclass
class Row:
    """A paper in a list: the paper, why it is there, its counts, and the viewer's own marks."""

    paper: Paper
    hit: Hit | None = None
    counts: dict = field(default_factory=dict)
    upvoted: bool = False
    saved: bool = False


@dataclass
class Listing:
    title: str
    rows: list[Row]
    page: int = 1
    limit: int = LIST_LIMIT
    has_next: bool = False
    window: str | None = None
    day: dt.date | None = None
    start: dt.date | None = None
    prev_day: dt.date | None = None
    next_day: dt.date | None = None
    category: str | None = None
    query: str | None = None
    shown_query: str | None = None  # the query searched after spelling correction
    filters: dict = field(default_factory=dict)


# -- parsing query values ------------------------------------------------------------------------

def parse_date(value: str | None, name: str = "date") -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"{name} {value!r} is not a date", hint="use YYYY-MM-DD, e.g. 2026-06-30") from None


def parse_int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise BadInput(f"{name} {value!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise BadInput(f"{name} must be between {lo} and {hi}, not {n}")
    return n


def parse_window(value: str | None) -> str:
    value = (value or "day").lower()
    aliases = {"daily": "day", "weekly": "week", "monthly": "month"}
    value = aliases.get(value, value)
    if value not in WINDOWS:
        raise BadInput(f"window {value!r} is not one of {', '.join(WINDOWS)}")
    return value


# -- rows ----------------------------------------------------------------------------------------

def viewer_marks(site: Site, user: User | None) -> tuple[set[int], set[int]]:
    if user is None:
        return set(), set()
    marks = site.store.interactions(user.id, kinds=("upvote", "save"))
    return {p for _, p, k, _ in marks if k == "upvote"}, {p for _, p, k, _ in marks if k == "save"}


def rows_for(site: Site, papers: list[Paper], hits: list[Hit | None], user: User | None) -> list[Row]:
    counts = site.store.engagement(paper_ids=[p.id for p in papers])
    upvoted, saved = viewer_marks(site, user)
    empty = {"upvote": 0, "save": 0, "view": 0, "dismiss": 0}
    return [Row(p, h, counts.get(p.id, empty), p.id in upvoted, p.id in saved) for p, h in zip(papers, hits)]


def rows_for_hits(site: Site, hits: list[Hit], user: User | None) -> list[Row]:
    by_ref = {h.paper_id: h.paper for h in hits if h.paper is not None}  # rankers hand their papers along
    for ref in [h.paper_id for h in hits if h.paper is None]:
        paper = site.store.find_paper(ref)
        if paper is not None:
            by_ref[ref] = paper
    kept = [h for h in hits if h.paper_id in by_ref]
    return rows_for(site, [by_ref[h.paper_id] for h in kept], kept, user)


# -- lists ---------------------------------------------------------------------------------------

def trending_list(site: Site, user: User | None, window: str = "day", day: dt.date | None = None,
                  category: str | None = None, page: int = 1, limit: int = LIST_LIMIT) -> Listing:
    day = day or trending_mod.latest_day(site.store) or dt.date.today()
    offset = (page - 1) * limit
    # ranked as of now, not as of the window's end: a vote cast today on last month's paper counts
    now = dt.datetime.now(dt.timezone.utc)
    hits = site.trending_cache.get(
        (window, day, category, offset, limit),
        lambda: trending_mod.trending(site.store, window, day, category=category, limit=limit + 1, offset=offset,
                                      now=now, prior=site.discovery.content_prior()))
    prev_day, next_day = trending_mod.neighbour_days(site.store, day)
    start = trending_mod.window_start(window, day)
    names = {"day": "Daily papers", "week": "Weekly papers", "month": "Monthly papers"}
    title = names[window] + (f" in {category}" if category else "")
    return Listing(title, rows_for_hits(site, hits[:limit], user), page, limit, len(hits) > limit, window, day,
                   start, prev_day, next_day, category)


def search_list(site: Site, user: User | None, query: str, *, category: str | None = None,
                since: dt.date | None = None, until: dt.date | None = None, author: str | None = None,
                page: int = 1, limit: int = SEARCH_LIMIT) -> Listing:
    filters = Filters(category=category or None, since=since, until=until, author=author or None)
    result = site.discovery.search_page(query, limit=limit + 1, offset=(page - 1) * limit, filters=filters)
    listing = Listing("Search", rows_for_hits(site, result.hits[:limit], user), page, limit, len(result.hits) > limit,
                      category=category or None, query=query)
    listing.shown_query = result.query if result.corrections else None
    listing.filters = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in vars(filters).items() if v}
    return listing


def author_list(site: Site, user: User | None, name: str, limit: int = MAX_LIMIT) -> Listing:
    papers = site.store.papers_by_author(name, limit=limit)
    if not papers:
        raise NotFound(f"no papers by {name!r}", hint="author names are matched exactly, as the papers spell them")
    return Listing(name, rows_for(site, papers, [None] * len(papers), user), limit=limit)


# -- one paper -----------------------------------------------------------------------------------

@dataclass
class PaperView:
    row: Row
    related: list[Row]
    collections: list[dict]  # the viewer's collections, each with "has" = holds this paper


def paper_view(site: Site, user: User | None, ref: str, related_k: int = 10) -> PaperView:
    paper = site.store.get_paper(ref)
    row = rows_for(site, [paper], [None], user)[0]
    related = rows_for_hits(site, site.discovery.related(paper, k=related_k), user)
    collections = []
    if user is not None:
        for c in site.store.collections(user.id):
            held = {p.id for p in site.store.collection_papers(user.id, c["id"])}
            collections.append({**c, "has": paper.id in held})
    return PaperView(row, related, collections)


# -- a reader's own things -----------------------------------------------------------------------

def require_user(user: User | None) -> User:
    if user is None:
        raise Unauthorized("log in to do this")
    return user


def library(site: Site, user: User) -> dict:
    marks = site.store.interactions(user.id, kinds=("save", "upvote"))
    saved = [p for _, p, k, _ in reversed(marks) if k == "save"]
    upvoted = [p for _, p, k, _ in reversed(marks) if k == "upvote"]
    papers = {p.id: p for p in site.store.get_papers(list({*saved, *upvoted}))}
    saved_rows = rows_for(site, [papers[i] for i in saved if i in papers], [None] * len(saved), user)
    upvoted_rows = rows_for(site, [papers[i] for i in upvoted if i in papers], [None] * len(upvoted), user)
    return {"saved": saved_rows, "upvoted": upvoted_rows, "collections": site.store.collections(user.id)}


def collection(site: Site, user: User, collection_id: int) -> dict:
    mine = {c["id"]: c for c in site.store.collections(user.id)}
    if collection_id not in mine:
        raise NotFound(f"no collection {collection_id}")
    papers = site.store.collection_papers(user.id, collection_id)
    return {"collection": mine[collection_id], "rows": rows_for(site, papers, [None] * len(papers), user)}


def export(site: Site, user: User) -> dict:
    """Everything papersift holds about a reader (GDPR art. 15/20): account, interactions with the
    papers they concern, collections with their papers, subscription, API token names (never secrets)."""
    store = site.store
    events = store.interactions(user.id)
    papers = {p.id: p for p in store.get_papers(list({pid for _, pid, _, _ in events}))}
    sub = store.get_subscription(user.email) if user.email else None
    return {
        "account": {"username": user.username, "email": user.email,
                    "created": user.created.isoformat() if user.created else None},
        "interactions": [{"paper": papers[pid].ref if pid in papers else None, "title": papers[pid].title if pid in papers
                          else None, "kind": kind, "at": at} for _, pid, kind, at in events],
        "collections": [{**c, "papers": [p.ref for p in store.collection_papers(user.id, c["id"])]}
                        for c in store.collections(user.id)],
        "subscription": None if sub is None else {"email": sub.email, "frequency": sub.frequency,
                                                  "categories": list(sub.categories), "status": sub.status},
        "api_tokens": [{"name": t["name"], "created_at": t["created_at"], "last_used_at": t["last_used_at"]}
                       for t in store.api_tokens(user.id)],
    }


def export_papers(site: Site, user: User) -> list[Paper]:
    ids = []
    for _, pid, _, _ in site.store.interactions(user.id, kinds=("save", "upvote")):
        if pid not in ids:
            ids.append(pid)
    for c in site.store.collections(user.id):
        ids += [p.id for p in site.store.collection_papers(user.id, c["id"]) if p.id not in ids]
    by_id = {p.id: p for p in site.store.get_papers(ids)}
    return [by_id[i] for i in ids if i in by_id]


# -- the reader's feed ---------------------------------------------------------------------------

def for_you(site: Site, user: User, page: int = 1, limit: int = SEARCH_LIMIT, like: str | None = None) -> dict:
    result = site.feed.feed(user, limit=limit, offset=(page - 1) * limit, seed=like or None)
    listing = Listing("For you", rows_for_hits(site, result.hits, user), page, limit, result.has_next)
    return {"listing": listing, "cold": result.cold, "basis": result.basis, "like": like,
            "mutes": site.store.mutes(user.id), "settings": site.store.feed_settings(user.id),
            "collections": site.store.collections(user.id)}


def feed_token(site: Site, user: User) -> str:
    """The signed token in a reader's private feed URL (no expiry; "reset" does not change it)."""
    from papersift.signing import sign

    return sign(site.key, "feed", {"u": user.id})


def feed_owner(site: Site, token: str) -> User:
    from papersift.signing import verify

    return site.store.get_user(int(verify(site.key, "feed", token).get("u", -1)))
