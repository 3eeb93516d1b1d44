"""RSS 2.0 and Atom 1.0 feeds of paper lists (trending, a category, a search, a reader's recommendations).

Pure rendering: the web layer picks the papers and the URLs, this module turns them into bytes.
Documents are built with `xml.etree.ElementTree`, never by pasting strings, so every title, author
and abstract is escaped by the serializer. Two things the serializer does not do, done here:

* it writes characters that XML 1.0 forbids (NUL, most C0 controls, U+FFFE, lone surrogates) as they
  are, and one of them in one abstract would make the whole feed unparseable: `_text` strips them;
* it knows nothing of HTML. An RSS `<description>` is HTML by convention (every reader renders it), so
  the abstract is HTML-escaped *before* it goes in: `<script>` in an abstract reaches the reader as
  the text `<script>`, not as markup. Atom says what its text is: `<summary type="text">` holds the
  plain abstract, `<content type="html">` the same escaped HTML as RSS.

Namespaces are declared as literal `xmlns:*` attributes on the root rather than through
`ElementTree.register_namespace`, which would change a process-wide table at import time.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence

from papersift.models import Paper

FEED_TYPES = {"rss": "application/rss+xml; charset=utf-8", "atom": "application/atom+xml; charset=utf-8"}

ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
GENERATOR = "papersift"

# Everything outside XML 1.0's Char production: C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FeedItem:
    """One paper in a feed. `link` is the absolute URL of its page on this site (also its guid / id,
    so the same paper in the daily and the weekly feed is one item to a reader that follows both);
    `reason` says why it is in the list and is shown to the reader; `score` is carried for callers
    (ordering, JSON twins) and not rendered: a bare number means nothing in a feed reader."""

    paper: Paper
    link: str
    reason: str = ""
    score: float | None = None


def _text(value: object) -> str:
    """Text safe to put in an XML 1.0 document. CR and CRLF become LF, which is what any XML parser
    would turn them into anyway, so what a reader gets back is exactly what this returns."""
    s = "" if value is None else str(value)
    return _NOT_XML_CHAR.sub("", s.replace("\r\n", "\n").replace("\r", "\n"))


def _utc(when: dt.date | dt.datetime) -> dt.datetime:
    """A date is taken as midnight UTC; a naive datetime as UTC (the catalog keeps UTC throughout)."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).replace(microsecond=0)


def rfc822(when: dt.date | dt.datetime) -> str:
    """`Mon, 15 Jun 2026 00:00:00 GMT`: RSS 2.0 dates (RFC 822 with four-digit years, as RFC 2822 writes)."""
    return email.utils.format_datetime(_utc(when), usegmt=True)


def rfc3339(when: dt.date | dt.datetime) -> str:
    """`2026-06-15T00:00:00Z`: Atom dates."""
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def published(paper: Paper, default: dt.datetime) -> dt.datetime:
    """When the paper reached the public: first listing, else submission, else latest version; a paper
    with none of these gets the feed's own date, so that every item has one."""
    when = paper.listed or paper.submitted or paper.updated
    return _utc(when) if when else _utc(default)


def _related_links(item: FeedItem) -> list[tuple[str, str, str]]:
    """(href, title, MIME type) for the paper elsewhere: arXiv abstract page and PDF, when known."""
    out = []
    if item.paper.abs_url and item.paper.abs_url != item.link:
        out.append((item.paper.abs_url, "arXiv abstract" if item.paper.arxiv_id else "Abstract", "text/html"))
    if item.paper.pdf_url:
        out.append((item.paper.pdf_url, "PDF", "application/pdf"))
    return out


def _html_summary(item: FeedItem) -> str:
    """The item body as an HTML fragment: every piece of text HTML-escaped, so nothing in a paper's
    metadata can become markup in the reader. (The XML serializer then escapes it a second time.)"""
    esc = lambda s: html.escape(_text(s), quote=True)  # noqa: E731
    parts = []
    if item.reason:
        parts.append(f"<p><em>{esc(item.reason)}</em></p>")
    if item.paper.abstract:
        parts.append(f"<p>{esc(item.paper.abstract)}</p>")
    links = [f'<a href="{esc(href)}">{esc(title)}</a>' for href, title, _ in _related_links(item)]
    if links:
        parts.append("<p>" + " | ".join(links) + "</p>")
    return "\n".join(parts)


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: _text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _text(text)
    return el


def _serialize(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def render_rss(title: str, link: str, self_url: str, description: str, items: Sequence[FeedItem],
               updated: dt.datetime) -> bytes:
    """An RSS 2.0 document, UTF-8 with an XML declaration. `link` is the HTML page the feed mirrors,
    `self_url` the feed's own URL (the `atom:link rel="self"` the RSS Advisory Board recommends).
    Authors go in `dc:creator`, one per author: RSS's own `<author>` must be an e-mail address."""
    rss = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS, "xmlns:dc": DC_NS})
    channel = _sub(rss, "channel")
    _sub(channel, "title", title)
    _sub(channel, "link", link)
    _sub(channel, "description", description)
    _sub(channel, "atom:link", href=self_url, rel="self", type=FEED_TYPES["rss"].split(";")[0])
    _sub(channel, "lastBuildDate", rfc822(updated))
    _sub(channel, "generator", GENERATOR)
    for item in items:
        el = _sub(channel, "item")
        _sub(el, "title", item.paper.title)
        _sub(el, "link", item.link)
        _sub(el, "guid", item.link, isPermaLink="true")
        for author in item.paper.authors:
            _sub(el, "dc:creator", author)
        for category in item.paper.categories:
            _sub(el, "category", category)
        _sub(el, "pubDate", rfc822(published(item.paper, updated)))
        _sub(el, "description", _html_summary(item))
    return _serialize(rss)


def render_atom(title: str, link: str, self_url: str, subtitle: str, items: Sequence[FeedItem],
                updated: dt.datetime, feed_id: str | None = None) -> bytes:
    """An Atom 1.0 document, UTF-8 with an XML declaration. `feed_id` defaults to `self_url`: an Atom
    id must never change, so pass one if the site's URLs might. The feed-level `<author>` is the
    site, which RFC 4287 requires whenever some entry (a paper with no authors) has none of its own."""
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _sub(feed, "title", title, type="text")
    if subtitle:
        _sub(feed, "subtitle", subtitle, type="text")
    _sub(feed, "link", href=link, rel="alternate", type="text/html")
    _sub(feed, "link", href=self_url, rel="self", type=FEED_TYPES["atom"].split(";")[0])
    _sub(feed, "id", feed_id or self_url)
    _sub(feed, "updated", rfc3339(updated))
    _sub(_sub(feed, "author"), "name", GENERATOR)
    _sub(feed, "generator", GENERATOR)
    for item in items:
        paper = item.paper
        entry = _sub(feed, "entry")
        _sub(entry, "title", paper.title, type="text")
        _sub(entry, "link", href=item.link, rel="alternate", type="text/html")
        for href, link_title, mime in _related_links(item):
            _sub(entry, "link", href=href, rel="related", type=mime, title=link_title)
        _sub(entry, "id", item.link)
        when = published(paper, updated)
        # <updated> is required: the latest version's date, never earlier than first publication
        _sub(entry, "published", rfc3339(when))
        _sub(entry, "updated", rfc3339(max(when, _utc(paper.updated)) if paper.updated else when))
        for author in paper.authors:
            _sub(_sub(entry, "author"), "name", author)
        for category in paper.categories:
            _sub(entry, "category", term=category)
        if paper.abstract:
            _sub(entry, "summary", paper.abstract, type="text")
        _sub(entry, "content", _html_summary(item), type="html")
    return _serialize(feed)
