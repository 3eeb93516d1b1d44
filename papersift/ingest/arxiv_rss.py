"""arXiv's announcement RSS (rss.arxiv.org/rss/<categories>, the 2024+ format): the papers announced
in today's mailing, each marked new, cross (a cross-list), replace or replace-cross.

One feed per announcement day; arXiv does not announce on weekends and holidays, and the feed is
then empty, which is normal. A bad category gets a feed titled 'Feed error for query …' whose
description is arXiv's message. The feed is small (a few MB for all of arXiv), so it is read whole
and is not resumable: re-reading it changes nothing in the catalog.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

from papersift.errors import BadInput, SourceError
from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.ingest.base import Record, SourceSpec, open_binary
from papersift.ingest.http import PoliteClient
from papersift.ingest.text import clean_text, latex_to_text, parse_date, split_arxiv_categories
from papersift.models import Paper, Problem

ARXIV_NS = "{http://arxiv.org/schemas/atom}"
DC_NS = "{http://purl.org/dc/elements/1.1/}"

# Only these two put a paper in the day's listing for the first time (for its category); a replace is
# a new version of a paper listed before, so its date is kept apart as `replaced_on`.
LISTING_TYPES = ("new", "cross")
REPLACE_TYPES = ("replace", "replace-cross")

_DESCRIPTION_PREFIX = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:)?\s*", re.IGNORECASE)
ERROR_TITLE = "feed error for query"
CATEGORY_HINT = ("check the category name: an archive such as `cs` or a category such as `cs.CL`, "
                 "several joined with `+` (e.g. cs.CL+cs.LG)")


@dataclass
class RssFeed:
    """One parsed feed. `date` is the announcement day (the channel's pubDate). `error` is arXiv's
    message when it answered with its error feed; `broken` says why the XML could not be read to the
    end (the items before the break are still in `records`, followed by a Problem)."""

    records: list[Paper | Problem] = field(default_factory=list)
    date: dt.date | None = None
    error: str | None = None
    broken: str | None = None
    title: str = ""

    @property
    def papers(self) -> list[Paper]:
        return [r for r in self.records if isinstance(r, Paper)]


# --- authors -----------------------------------------------------------------------------------------

_SEPARATOR = re.compile(r",|\s+and\s+")


def _split_top_level(text: str) -> list[str]:
    """Split an author list on commas and "and" outside (parentheses) and {braces}: affiliations hold
    both. The bracketed text is masked first so that one regex finds the separators that count."""
    masked, depth = [], 0
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}" and depth:
            depth -= 1
            masked.append("_")
            continue
        masked.append("_" if depth else ch)
    parts, last = [], 0
    for m in _SEPARATOR.finditer("".join(masked)):
        parts.append(text[last:m.start()])
        last = m.end()
    parts.append(text[last:])
    return parts


def _strip_parentheses(text: str) -> tuple[str, list[str]]:
    """`Jun Cui (Tianjin U, China)` → (`Jun Cui `, [`Tianjin U, China`]); nested parentheses stay inside."""
    name, groups, depth, current = [], [], 0, []
    for ch in text:
        if ch == "(":
            if depth:
                current.append(ch)
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth:
                current.append(ch)
            else:
                groups.append("".join(current).strip())
                current = []
        elif depth:
            current.append(ch)
        else:
            name.append(ch)
    return "".join(name), [g for g in groups if g]


def split_rss_authors(text: str | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """dc:creator `A One (Univ X, Country), B Two and C Thr\\'ee` → the names in order (LaTeX accents
    converted) and {name: affiliation} for those that carry one in parentheses."""
    names: list[str] = []
    affiliations: dict[str, str] = {}
    for piece in _split_top_level(clean_text(text)):
        bare, groups = _strip_parentheses(piece)
        name = latex_to_text(bare)
        if not name:
            continue
        names.append(name)
        if groups:
            affiliations[name] = latex_to_text("; ".join(groups))
    return tuple(names), affiliations


# --- items -------------------------------------------------------------------------------------------

def _item_fields(item: Element) -> dict:
    """The parts of an <item> we use, as text, so the element can be freed right away."""
    return {
        "title": item.findtext("title"),
        "link": item.findtext("link"),
        "guid": item.findtext("guid"),
        "description": item.findtext("description"),
        "categories": [c.text or "" for c in item.findall("category")],
        "pubDate": item.findtext("pubDate"),
        "announce_type": item.findtext(ARXIV_NS + "announce_type"),
        "creators": ", ".join(c.text or "" for c in item.findall(DC_NS + "creator")),
        "rights": item.findtext(DC_NS + "rights"),
        "doi": item.findtext(ARXIV_NS + "DOI"),
        "journal_ref": item.findtext(ARXIV_NS + "journal_reference"),
    }


def _item_id(fields: dict, prefix: re.Match | None) -> tuple[str, int | None] | None:
    """The id with its version: the guid (`oai:arXiv.org:2411.17700v1`) and the description's
    `arXiv:2411.17700v1` carry the version, the link (`…/abs/2411.17700`) does not."""
    candidates = []
    guid = (fields["guid"] or "").strip()
    if guid.lower().startswith("oai:arxiv.org:"):
        candidates.append(guid[len("oai:arxiv.org:"):])
    if prefix:
        candidates.append(prefix.group("id"))
    candidates += [fields["link"], guid]
    fallback = None
    for text in candidates:
        parsed = parse_arxiv_id(text)
        if parsed and parsed[1] is not None:
            return parsed
        fallback = fallback or parsed
    return fallback


def build_rss_paper(fields: dict, number: int, feed_date: dt.date | None,
                    source: str = "arxiv-rss") -> Paper | Problem:
    """One item's fields (see _item_fields) → a Paper, or a Problem saying why not."""
    description = fields["description"] or ""
    prefix = _DESCRIPTION_PREFIX.match(description)
    parsed = _item_id(fields, prefix)
    if not parsed:
        return Problem(source, f"item {number}", f"no arXiv id in link {fields['link']!r} or guid {fields['guid']!r}")
    arxiv_id, version = parsed
    position = f"item {number} ({arxiv_id})"
    title = clean_text(fields["title"])
    if not title:
        return Problem(source, position, "missing title")
    try:
        date = parse_date(fields["pubDate"]) or feed_date
    except ValueError as e:
        return Problem(source, position, str(e))
    announce_type = clean_text(fields["announce_type"] or (prefix.group("type") if prefix else "")).lower()
    abstract = description[prefix.end():] if prefix else description
    authors, affiliations = split_rss_authors(fields["creators"])
    categories, other_classes = split_arxiv_categories(fields["categories"])
    doi_text = (fields["doi"] or "").split()
    doi = normalize_doi(doi_text[0]) if doi_text else None  # the field may hold several DOIs

    signals: dict = {}
    if announce_type:
        signals["announce_type"] = announce_type
    if announce_type in REPLACE_TYPES and date:
        signals["replaced_on"] = date.isoformat()
    if fields["rights"]:
        signals["license"] = clean_text(fields["rights"])
    if other_classes:
        signals["classes"] = list(other_classes)
    if affiliations:
        signals["affiliations"] = affiliations
    links = {"abs": clean_text(fields["link"])} if fields["link"] else {}
    if doi:
        links["doi"] = f"https://doi.org/{doi}"
    return Paper(
        arxiv_id=arxiv_id, version=version, title=title, abstract=clean_text(abstract), authors=authors,
        categories=categories, doi=doi, journal_ref=clean_text(fields["journal_ref"]) or None,
        listed=date if announce_type in LISTING_TYPES else None,
        source=source, links=links, signals=signals,
    )


# --- the feed ----------------------------------------------------------------------------------------

def _channel_date(channel: dict) -> dt.date | None:
    # pubDate is the announcement day in arXiv's own zone (`Thu, 28 Nov 2024 00:00:00 -0500`);
    # lastBuildDate is in UTC and can fall on the next day, so it is only the fallback
    for key in ("pubDate", "lastBuildDate"):
        try:
            date = parse_date(channel.get(key))
        except ValueError:
            continue
        if date:
            return date
    return None


def parse_arxiv_rss(data: bytes, source: str = "arxiv-rss") -> RssFeed:
    """A feed's papers (and Problems for unusable items), its date, and arXiv's error message if any."""
    feed = RssFeed()
    channel: dict[str, str] = {}
    items: list[dict] = []
    in_item = False
    root_seen = False
    try:
        # iterparse, so that a feed cut off mid-item still gives every item before the cut
        for event, elem in iterparse(io.BytesIO(data), events=("start", "end")):
            if event == "start":
                if not root_seen:
                    root_seen = True
                    if elem.tag != "rss":
                        feed.broken = f"not an RSS feed (the document is <{elem.tag}>)"
                        break
                if elem.tag == "item":
                    in_item = True
                continue
            if elem.tag == "item":
                items.append(_item_fields(elem))
                in_item = False
                elem.clear()
            elif not in_item and elem.tag in ("title", "description", "pubDate", "lastBuildDate"):
                channel.setdefault(elem.tag, elem.text or "")  # the first is the channel's own
    except ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        feed.broken = f"malformed or cut-off XML at line {line} ({e}); {len(items)} items read before it"
    except DefusedXmlException as e:
        feed.broken = f"refused XML: {e}"

    feed.title = clean_text(channel.get("title"))
    feed.date = _channel_date(channel)
    if feed.title.lower().startswith(ERROR_TITLE):
        feed.error = clean_text(channel.get("description")) or feed.title
        return feed
    for number, fields in enumerate(items, 1):
        feed.records.append(build_rss_paper(fields, number, feed.date, source))
    if feed.broken:
        feed.records.append(Problem(source, f"item {len(items) + 1}", feed.broken))
    return feed


# --- live --------------------------------------------------------------------------------------------

_CATEGORY = re.compile(r"^[a-z-]+(?:\.[A-Za-z-]+)?$")


def normalize_categories(text: str) -> str:
    """`cs.CL+cs.LG`, `cs.CL,cs.LG` or `cs.CL cs.LG` → `cs.CL+cs.LG` (the feed URL's form)."""
    codes = [c for c in re.split(r"[+,\s]+", text.strip()) if c]
    bad = [c for c in codes if not _CATEGORY.match(c)]
    if not codes or bad:
        raise BadInput(f"not an arXiv category: {(bad or [text])[0]!r}", hint=CATEGORY_HINT)
    return "+".join(codes)


def _records(feed: RssFeed, what: str) -> Iterator[Record]:
    if feed.error:
        raise SourceError(f"arXiv RSS feed error for {what}: {feed.error}", hint=CATEGORY_HINT)
    if feed.broken and not feed.papers:
        raise SourceError(f"{what} is not a readable arXiv RSS feed: {feed.broken}",
                          hint="arXiv may be down or answering with a maintenance page; try again later")
    yield from feed.records


def fetch_arxiv_rss(client: PoliteClient, base_url: str, categories: str,
                    source: str = "arxiv-rss") -> Iterator[Record]:
    """The papers of today's announcement for `categories` (e.g. `cs.CL+cs.LG`)."""
    categories = normalize_categories(categories)
    url = base_url.rstrip("/") + "/" + quote(categories, safe="+.-")
    # arXiv's error feed is worth reading whatever status it comes with: it names the bad category
    response = client.get(url, ok_statuses=(400, 404))
    feed = parse_arxiv_rss(response.content, source)
    if response.status_code >= 400 and not feed.error:
        raise SourceError(f"{url} answered HTTP {response.status_code}", hint=CATEGORY_HINT)
    yield from _records(feed, categories)


def _is_path(target: str) -> bool:
    return target.endswith((".xml", ".xml.gz", ".rss")) or Path(target).expanduser().is_file()


def open_arxiv_rss(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    if _is_path(target):
        stream = open_binary(target)
        try:
            data = stream.read()
        finally:
            stream.close()
        yield from _records(parse_arxiv_rss(data), target)
        return
    with PoliteClient.from_settings(settings) as client:
        yield from fetch_arxiv_rss(client, settings.arxiv_rss_url, target)


SOURCES = [
    SourceSpec(
        name="arxiv-rss", help="today's arXiv announcements from rss.arxiv.org (new, cross-lists, replacements)",
        example="papersift ingest arxiv-rss cs.CL+cs.LG",
        target_help="categories such as cs.CL or cs.CL+cs.AI (an archive like cs takes all of it), "
                    "or the path of a saved feed",
        open=open_arxiv_rss,
    ),
]
