"""The arXiv API (export.arxiv.org/api/query): an Atom feed of papers for a search query or an id list,
paged with `start` and `max_results`.

Two serializers are in the wild and both parse: the legacy one (to 2025) declares the arxiv and
opensearch namespaces on each element that uses them and wraps long titles; the new one declares them
once on <feed>. Namespaces resolve the same either way, so the parser only looks at resolved tags.
A bad query or id comes back as a feed holding one entry titled 'Error' whose summary is the message,
served with HTTP 400 (new) or 200 (legacy); it is reported as `error`, never as a paper.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

from papersift.errors import BadInput, SourceError
from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.ingest.base import Checkpoint, Record, SourceSpec, open_binary
from papersift.ingest.http import PoliteClient
from papersift.ingest.text import clean_text, parse_date, split_arxiv_categories
from papersift.models import Paper, Problem

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"

DEFAULT_MAX = 100
PAGE_SIZE = 100  # arXiv allows up to 2,000 per request but asks for modest pages
QUERY_HINT = ("check the query syntax (e.g. `all:transformer AND cat:cs.LG`, fields ti: au: abs: cat: id:) "
              "and the ids (e.g. 2401.00001, hep-th/9901001)")


@dataclass
class ApiFeed:
    """One parsed page. `error` is the API's message when it answered with its error feed; `broken`
    says why the XML could not be read to the end (entries before the break are still in `records`)."""

    records: list[Paper | Problem] = field(default_factory=list)
    total_results: int | None = None
    start_index: int | None = None
    items_per_page: int | None = None
    error: str | None = None
    broken: str | None = None

    @property
    def papers(self) -> list[Paper]:
        return [r for r in self.records if isinstance(r, Paper)]


def _is_error_entry(entry: Element) -> bool:
    # the error entry's id is https://arxiv.org/api/errors#…; the title test alone would also
    # catch a real paper titled "Error", which has an arXiv id
    entry_id = entry.findtext(ATOM + "id") or ""
    if "/api/errors" in entry_id:
        return True
    return clean_text(entry.findtext(ATOM + "title")) == "Error" and parse_arxiv_id(entry_id) is None


def build_api_paper(entry: Element, number: int, source: str = "arxiv-api") -> Paper | Problem:
    """One Atom <entry> → a Paper, or a Problem saying why not."""
    raw_id = clean_text(entry.findtext(ATOM + "id"))
    parsed = parse_arxiv_id(raw_id)
    if not parsed:
        return Problem(source, f"entry {number}", f"no arXiv id in <id> {raw_id!r}")
    arxiv_id, version = parsed
    position = f"entry {number} ({arxiv_id})"
    title = clean_text(entry.findtext(ATOM + "title"))
    if not title:
        return Problem(source, position, "missing title")
    try:
        submitted = parse_date(entry.findtext(ATOM + "published"))
        updated = parse_date(entry.findtext(ATOM + "updated"))
    except ValueError as e:
        return Problem(source, position, str(e))

    authors, affiliations = [], {}
    for author in entry.findall(ATOM + "author"):
        name = clean_text(author.findtext(ATOM + "name"))
        if not name:
            continue
        authors.append(name)
        places = [clean_text(a.text) for a in author.findall(ARXIV + "affiliation") if clean_text(a.text)]
        if places:
            affiliations[name] = "; ".join(places)

    primary = entry.find(ARXIV + "primary_category")
    terms = [primary.get("term", "")] if primary is not None else []
    terms += [c.get("term", "") for c in entry.findall(ATOM + "category")]
    categories, other_classes = split_arxiv_categories(terms)  # ACM/MSC codes come as categories too

    links: dict[str, str] = {}
    for link in entry.findall(ATOM + "link"):
        href, rel, kind = link.get("href"), link.get("rel"), link.get("title")
        if not href:
            continue
        if kind in ("pdf", "doi"):
            links.setdefault(kind, href)
        elif rel == "alternate":
            links.setdefault("abs", href)
    doi_text = (entry.findtext(ARXIV + "doi") or "").split()
    doi = normalize_doi(doi_text[0]) if doi_text else None  # the field may hold several DOIs
    if doi:
        links["doi"] = f"https://doi.org/{doi}"

    signals: dict = {}
    if other_classes:
        signals["classes"] = list(other_classes)
    if affiliations:
        signals["affiliations"] = affiliations
    return Paper(
        arxiv_id=arxiv_id, version=version, title=title, abstract=clean_text(entry.findtext(ATOM + "summary")),
        authors=tuple(authors), categories=categories, submitted=submitted, updated=updated, doi=doi,
        comment=clean_text(entry.findtext(ARXIV + "comment")) or None,
        journal_ref=clean_text(entry.findtext(ARXIV + "journal_ref")) or None,
        source=source, links=links, signals=signals,
    )


def _number(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def parse_arxiv_api(data: bytes, source: str = "arxiv-api") -> ApiFeed:
    """A page's papers (and Problems for unusable entries), its paging numbers, and the API's error."""
    feed = ApiFeed()
    entries = 0
    root_seen = False
    try:
        # iterparse, so that a page cut off mid-entry still gives every entry before the cut
        for event, elem in iterparse(io.BytesIO(data), events=("start", "end")):
            if event == "start":
                if not root_seen:
                    root_seen = True
                    if elem.tag != ATOM + "feed":
                        feed.broken = f"not an Atom feed (the document is <{elem.tag}>)"
                        break
                continue
            if elem.tag == ATOM + "entry":
                entries += 1
                if _is_error_entry(elem):
                    feed.error = clean_text(elem.findtext(ATOM + "summary")) or "unexplained error"
                else:
                    feed.records.append(build_api_paper(elem, entries, source))
                elem.clear()
            elif elem.tag == OPENSEARCH + "totalResults":
                feed.total_results = _number(elem.text)
            elif elem.tag == OPENSEARCH + "startIndex":
                feed.start_index = _number(elem.text)
            elif elem.tag == OPENSEARCH + "itemsPerPage":
                feed.items_per_page = _number(elem.text)
    except ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        feed.broken = f"malformed or cut-off XML at line {line} ({e}); {entries} entries read before it"
    except DefusedXmlException as e:
        feed.broken = f"refused XML: {e}"
    if feed.error:
        feed.records = []  # the error feed's lone entry is the message, not a paper
    elif feed.broken:
        feed.records.append(Problem(source, f"entry {entries + 1}", feed.broken))
    return feed


# --- live --------------------------------------------------------------------------------------------

def _raise_for_error(feed: ApiFeed, what: str) -> None:
    if feed.error:
        raise SourceError(f"the arXiv API refused {what}: {feed.error}", hint=QUERY_HINT)


def fetch_arxiv_api(client: PoliteClient, base_url: str, *, query: str | None = None,
                    id_list: list[str] | None = None, max_results: int = DEFAULT_MAX,
                    page_size: int = PAGE_SIZE, start: int = 0, source: str = "arxiv-api") -> Iterator[Record]:
    """Papers for `query` or `id_list`, results `start` up to `max_results` (an index, so a resumed run
    stops where a fresh one would), a page at a time with a flushing Checkpoint(next start) after each."""
    if not query and not id_list:
        raise BadInput("give a search query or a list of arXiv ids", hint=QUERY_HINT)
    what = f"query {query!r}" if query else f"ids {','.join(id_list or [])}"
    params = {"search_query": query or "", "id_list": ",".join(id_list or [])}
    if query:
        # newest first: the catalog wants recent papers, and papers submitted while we page only push
        # later pages down (a paper seen twice), where relevance order can reshuffle and skip some
        params |= {"sortBy": "submittedDate", "sortOrder": "descending"}
    position, end = start, max_results
    while position < end:
        count = min(page_size, end - position)
        response = client.get(base_url, {**params, "start": str(position), "max_results": str(count)},
                              ok_statuses=(400,))
        feed = parse_arxiv_api(response.content, source)
        _raise_for_error(feed, what)
        if response.status_code >= 400:
            raise SourceError(f"{base_url} answered HTTP {response.status_code} for {what}", hint=QUERY_HINT)
        if feed.broken:
            # nothing from this page is kept: the checkpoint still points at it, so a re-run refetches it
            raise SourceError(f"the arXiv API page at start={position} is unreadable: {feed.broken}",
                              hint="arXiv may be overloaded; run the same command again to resume from this page")
        if not feed.records:
            return
        yield from feed.records
        position += len(feed.records)
        yield Checkpoint(str(position), flush=True)
        if feed.total_results is not None:
            end = min(end, feed.total_results)


def _is_path(target: str) -> bool:
    return target.endswith((".xml", ".xml.gz", ".atom")) or Path(target).expanduser().is_file()


def _ids(text: str | None) -> list[str]:
    ids = [t.strip() for t in (text or "").split(",") if t.strip()]
    for arxiv_id in ids:
        if parse_arxiv_id(arxiv_id) is None:
            raise BadInput(f"not an arXiv id: {arxiv_id!r}", hint="ids look like 2401.00001, 2401.00001v2 or hep-th/9901001")
    return ids


def _max(opts: dict, default: int) -> int:
    text = opts.get("max")
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise BadInput(f"--max must be a positive whole number, not {text!r}")
    return value


def open_arxiv_api(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    ids = _ids(opts.get("ids"))
    if not ids and target and _is_path(target):
        stream = open_binary(target)
        try:
            feed = parse_arxiv_api(stream.read())
        finally:
            stream.close()
        _raise_for_error(feed, target)
        yield from feed.records
        return
    query = None if ids else (target or "").strip()
    if not ids and query in ("", "-"):
        raise BadInput("give a search query, a saved feed file, or `- --ids ID,ID`", hint=QUERY_HINT)
    max_results = _max(opts, max(DEFAULT_MAX, len(ids)))
    with PoliteClient.from_settings(settings) as client:
        yield from fetch_arxiv_api(client, settings.arxiv_api_url, query=query, id_list=ids,
                                   max_results=max_results, start=int(start or 0))


def resume_key(target: str, opts: dict) -> str | None:
    """Live queries resume at the saved start index; files and id lists are small and re-read whole."""
    if opts.get("ids") or not target or target == "-" or _is_path(target):
        return None
    return f"arxiv-api:{target.strip()}:{opts.get('max') or DEFAULT_MAX}"


SOURCES = [
    SourceSpec(
        name="arxiv-api", help="papers from the arXiv API for a search query or a list of ids",
        example='papersift ingest arxiv-api "cat:cs.CL AND ti:retrieval" --max 300',
        target_help="an arXiv search query (e.g. `all:transformer AND cat:cs.LG`), `-` with --ids, "
                    "or the path of a saved API feed",
        open=open_arxiv_api, resume_key=resume_key,
        options=(("ids", "comma-separated arXiv ids to fetch instead of a query"),
                 ("max", "most results to fetch, default 100")),
    ),
]
