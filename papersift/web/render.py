"""HTML rendering: one Jinja2 environment, autoescaped everywhere (design.md, principle 11).

`highlight` marks the words of a query in a title or abstract: the text is split into words and
gaps, every piece is escaped, and words whose stem is a query stem are wrapped in <mark>, so no
text from a paper or a query can ever become markup.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import urllib.parse

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from papersift.index.lexical import Analyzer
from papersift.web.site import Site, Viewer

_WORDS = re.compile(r"([^\W_]+)", re.UNICODE)


@functools.lru_cache(maxsize=1)
def _analyzer() -> Analyzer:
    return Analyzer()


def query_stems(query: str | None) -> frozenset[str]:
    if not query:
        return frozenset()
    return frozenset(_analyzer().terms(query))


def highlight(text: str | None, stems: frozenset[str], limit: int | None = None) -> Markup:
    text = text or ""
    if limit and len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit] + " …"
    if not stems:
        return escape(text)
    parts = _WORDS.split(text)
    words = parts[1::2]
    marked = _analyzer().stems([w.lower() for w in words])
    out = []
    for i, part in enumerate(parts):
        if i % 2 and marked[i // 2] in stems:
            out.append(Markup("<mark>") + escape(part) + Markup("</mark>"))
        else:
            out.append(escape(part))
    return Markup("").join(out)


@functools.lru_cache(maxsize=65536)
def paper_url(ref: str) -> str:
    return "/papers/" + urllib.parse.quote(ref, safe="/.:")


@functools.lru_cache(maxsize=65536)  # a list page links ~100 author names; quoting each is most of a row's cost
def author_url(name: str) -> str:
    return "/authors/" + urllib.parse.quote(name, safe="")


def nice_date(day: dt.date | None) -> str:
    return day.strftime("%-d %b %Y") if day else ""


def query_string(**params) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "", False)})


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("papersift.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)  # templates ship with the package
    env.filters.update(highlight=highlight, paper_url=paper_url, author_url=author_url, nice_date=nice_date)
    env.globals.update(query_string=query_string, query_stems=query_stems)
    return env


def render(site: Site, request: Request, viewer: Viewer, template: str, context: dict, status: int = 200) -> HTMLResponse:
    page = environment().get_template(template).render(
        site_name="papersift", user=viewer.user, csrf=viewer.csrf, path=request.url.path,
        request_query=request.url.query, **context)
    return HTMLResponse(page, status_code=status)
