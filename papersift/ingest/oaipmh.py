"""arXiv OAI-PMH harvesting (`verb=ListRecords`): every paper whose metadata changed in a date range,
a page of up to 1,000 records at a time, paged with resumption tokens.

Three metadata formats parse: `arXivRaw` (the default: full version history, so true v1 and latest
dates, and the category codes), `arXiv` (structured author names with affiliations, but only a
`created` date that is not always the v1 date) and `oai_dc` (Dublin Core: subject names instead of
category codes). `from`/`until` select on the OAI datestamp, the day a record last changed in arXiv's
metadata (a new version, a journal reference added …), not on the submission day.

Pages are parsed incrementally with defusedxml, so a page cut off mid-transfer still gives every
record before the cut (followed by one Problem) and a hostile document cannot expand entities.
"""

from __future__ import annotations

import datetime as dt
import io
import re
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
from papersift.ingest.text import clean_text, latex_to_text, parse_date, split_arxiv_categories
from papersift.models import Paper, Problem

OAI = "{http://www.openarchives.org/OAI/2.0/}"
RAW = "{http://arxiv.org/OAI/arXivRaw/}"
ARXIV = "{http://arxiv.org/OAI/arXiv/}"
OAI_DC = "{http://www.openarchives.org/OAI/2.0/oai_dc/}"
DC = "{http://purl.org/dc/elements/1.1/}"

PREFIXES = ("arXivRaw", "arXiv", "oai_dc")
VERBS = ("ListRecords", "GetRecord", "ListIdentifiers")

ERROR_HINTS = {
    "badResumptionToken": "the resumption token expired (arXiv keeps them for a few hours); "
                          "re-run with --fresh to start the harvest over",
    "badArgument": "check --from/--until (YYYY-MM-DD) and the set (e.g. cs, physics:hep-th)",
    "cannotDisseminateFormat": "--prefix must be arXivRaw, arXiv or oai_dc",
    "badVerb": "check that the oai_url setting points at an OAI-PMH endpoint",
}
DATE_HINT = "dates are OAI datestamps as YYYY-MM-DD, e.g. --from 2024-01-25 --until 2024-01-26"


@dataclass
class OaiPage:
    """One parsed reply. `error` is the OAI-level (code, message); `broken` says why the XML could not
    be read to the end (the records before the break are in `records`, followed by a Problem);
    `verb` is the reply's kind (ListRecords, GetRecord, ListIdentifiers) and `root` its root element."""

    records: list[Paper | Problem] = field(default_factory=list)
    resumption_token: str | None = None
    complete_list_size: int | None = None
    error: tuple[str, str] | None = None
    broken: str | None = None
    verb: str | None = None
    root: str | None = None

    @property
    def papers(self) -> list[Paper]:
        return [r for r in self.records if isinstance(r, Paper)]


# --- one record ------------------------------------------------------------------------------------

_OAI_ID_PREFIX = re.compile(r"^oai:arxiv\.org:", re.IGNORECASE)
_SUFFIXES = {"Jr", "Jr.", "Sr", "Sr.", "II", "III", "IV"}
_PARENS = re.compile(r"\([^()]*\)")
_AUTHOR_SEPARATORS = re.compile(r"[,;]|\band\b")


def _arxiv_id(*candidates: str | None) -> tuple[str, int | None]:
    for text in candidates:
        parsed = parse_arxiv_id(_OAI_ID_PREFIX.sub("", clean_text(text)))
        if parsed:
            return parsed
    raise ValueError(f"missing or malformed arXiv id {clean_text(candidates[0]) or None!r}")


def split_raw_authors(text: str | None) -> tuple[str, ...]:
    """arXivRaw's `A. One, B. Two (Univ X), and C. Three` → names in order; affiliations in (nested)
    parentheses dropped, LaTeX accents converted, a `Jr.` split off by a comma put back on its name."""
    text = latex_to_text(text)
    previous = None
    while previous != text:
        previous, text = text, _PARENS.sub("", text)
    names: list[str] = []
    for piece in (clean_text(p) for p in _AUTHOR_SEPARATORS.split(text)):
        if piece in _SUFFIXES and names:
            names[-1] += " " + piece
        elif piece:
            names.append(piece)
    return tuple(names)


def _dc_name(creator: str | None) -> str:
    """Dublin Core's `Last, First` (or `Last, Jr., First`) → `First Last`."""
    bits = [b.strip() for b in latex_to_text(creator).split(",")]
    if len(bits) == 2:
        return clean_text(f"{bits[1]} {bits[0]}")
    if len(bits) == 3:
        return clean_text(f"{bits[2]} {bits[0]} {bits[1]}")
    return clean_text(" ".join(bits))


def _id_month_agrees(created: dt.date, arxiv_id: str) -> bool:
    """True when `created` falls in the month the id was issued (`1412.8544`, `hep-th/9504118` → 14/12,
    95/04), give or take a day for time zones: the `arXiv` format's <created> is not always the v1 date,
    and the catalog keeps the earliest submitted date it sees, so a wrong one would stick."""
    yymm = arxiv_id.split("/")[-1][:4]
    days = (created - dt.timedelta(days=1), created, created + dt.timedelta(days=1))
    return any(d.strftime("%y%m") == yymm for d in days)


def _codes(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"[,;]", text) if c.strip()]


def _from_arxiv(body: Element, ns: str, header_id: str, source: str, signals: dict) -> Paper:
    """An `arXivRaw` or `arXiv` record (same element names, different authors and dates)."""

    def text(name: str) -> str:
        return clean_text(body.findtext(ns + name))

    arxiv_id, id_version = _arxiv_id(body.findtext(ns + "id"), header_id)
    title = text("title")
    if not title:
        raise ValueError(f"{arxiv_id}: missing title")
    links: dict[str, str] = {}
    version = id_version
    if ns == RAW:
        history = []
        for v in body.findall(ns + "version"):
            label = v.get("version") or ""
            number = int(label[1:]) if label[:1] in ("v", "V") and label[1:].isdigit() else None
            history.append((number, parse_date(v.findtext(ns + "date"))))
        submitted = next((d for n, d in history if n == 1), None)
        numbered = [h for h in history if h[0]]
        latest = max(numbered, key=lambda h: h[0]) if numbered else (history[-1] if history else (None, None))
        version, updated = latest[0] or version, latest[1]
        authors = split_raw_authors(body.findtext(ns + "authors"))
    else:
        created, updated = parse_date(text("created")), parse_date(text("updated"))
        # <created> is only trusted when it agrees with the id (see _id_month_agrees)
        submitted = created if created and _id_month_agrees(created, arxiv_id) else None
        if created:
            signals["oai_created"] = created.isoformat()
        names, affiliations = [], {}
        for author in body.iter(ns + "author"):
            parts = [author.findtext(ns + k) for k in ("forenames", "keyname", "suffix")]
            name = latex_to_text(" ".join(p for p in parts if p and p.strip()))
            if not name:
                continue
            names.append(name)
            places = [clean_text(a.text) for a in author.findall(ns + "affiliation") if clean_text(a.text)]
            if places:
                affiliations[name] = "; ".join(places)
        authors = tuple(names)
        if affiliations:
            signals["affiliations"] = affiliations

    categories, other = split_arxiv_categories(text("categories"))  # primary first, as arXiv lists them
    classes = list(other) + _codes(text("msc-class")) + _codes(text("acm-class"))
    if classes:
        signals["classes"] = list(dict.fromkeys(classes))
    # <doi> may hold several DOIs separated by spaces (a paper and its erratum): the first is the paper's
    dois = [d for d in map(normalize_doi, text("doi").split()) if d]
    if dois:
        links["doi"] = f"https://doi.org/{dois[0]}"
        if len(dois) > 1:
            signals["dois"] = dois
    for name, key in (("report-no", "report_no"), ("license", "license")):
        if text(name):
            signals[key] = text(name)
    return Paper(
        title=title, arxiv_id=arxiv_id, version=version, doi=dois[0] if dois else None,
        abstract=text("abstract"), authors=authors, categories=categories, submitted=submitted,
        updated=updated, source=source, links=links, comment=text("comments") or None,
        journal_ref=text("journal-ref") or None, signals=signals,
    )


def _from_oai_dc(body: Element, header_id: str, source: str, signals: dict) -> Paper:
    """An `oai_dc` record. It has subject names, not category codes, so `categories` stays empty."""
    identifiers = [clean_text(e.text) for e in body.findall(DC + "identifier") if clean_text(e.text)]
    arxiv_id, id_version = _arxiv_id(next((i for i in identifiers if parse_arxiv_id(i)), None), header_id)
    title = clean_text(body.findtext(DC + "title"))
    if not title:
        raise ValueError(f"{arxiv_id}: missing title")
    # dc:date lists the v1 date first and the latest version's last
    dates = [parse_date(e.text) for e in body.findall(DC + "date")]
    dates = [d for d in dates if d]
    abstract, comments = [], []
    for e in body.findall(DC + "description"):
        piece = clean_text(e.text)
        if piece.lower().startswith("comment:"):
            comments.append(piece[len("comment:"):].strip())
        elif piece:
            abstract.append(piece)
    doi, journal_ref = None, None
    for ident in identifiers:
        if parse_arxiv_id(ident) or ident.startswith(("http://", "https://")):
            continue
        doi = doi or normalize_doi(ident)
        if not normalize_doi(ident):  # arXiv puts the journal reference among the identifiers
            journal_ref = journal_ref or ident
    subjects = [clean_text(e.text) for e in body.findall(DC + "subject") if clean_text(e.text)]
    if subjects:
        signals["subjects"] = subjects
    return Paper(
        title=title, arxiv_id=arxiv_id, version=id_version, doi=doi, abstract=" ".join(abstract),
        authors=tuple(n for n in (_dc_name(e.text) for e in body.findall(DC + "creator")) if n),
        submitted=dates[0] if dates else None, updated=dates[-1] if dates else None, source=source,
        links={"doi": f"https://doi.org/{doi}"} if doi else {}, comment="; ".join(comments) or None,
        journal_ref=journal_ref, signals=signals,
    )


def build_oai_record(record: Element, number: int, source: str = "oai") -> Paper | Problem:
    """One OAI <record> → a Paper, or a Problem saying why not (deleted, no id, no title, bad date)."""
    header = record.find(OAI + "header")
    header_id = clean_text(header.findtext(OAI + "identifier")) if header is not None else ""
    position = f"record {number} ({header_id})" if header_id else f"record {number}"
    if header is None:
        return Problem(source, position, "no <header>")
    if header.get("status") == "deleted":
        return Problem(source, position, "deleted upstream")
    metadata = record.find(OAI + "metadata")
    body = metadata[0] if metadata is not None and len(metadata) else None
    if body is None:
        return Problem(source, position, "no <metadata>")
    try:
        datestamp = parse_date(header.findtext(OAI + "datestamp"))
        signals: dict = {"oai_sets": [clean_text(s.text) for s in header.findall(OAI + "setSpec")]}
        if datestamp:
            signals["oai_datestamp"] = datestamp.isoformat()
        if body.tag in (RAW + "arXivRaw", ARXIV + "arXiv"):
            return _from_arxiv(body, body.tag.split("}")[0] + "}", header_id, source, signals)
        if body.tag == OAI_DC + "dc":
            return _from_oai_dc(body, header_id, source, signals)
        return Problem(source, position, f"unknown metadata format <{body.tag}>")
    except ValueError as e:
        return Problem(source, position, str(e))


# --- one page ---------------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_oai_page(data: bytes, source: str = "oai") -> OaiPage:
    """A reply's records (Papers, and Problems for unusable ones), its resumption token and list size,
    and its OAI error. Never raises on bad input: a cut-off or malformed document gives the records
    before the break followed by one Problem, and `broken` says what happened."""
    page = OaiPage()
    count, last_id = 0, ""
    try:
        for event, elem in iterparse(io.BytesIO(data), events=("start", "end")):
            if event == "start":
                if page.root is None:
                    page.root = _local(elem.tag)
                    if elem.tag != OAI + "OAI-PMH":
                        page.broken = f"not an OAI-PMH reply (the document is <{page.root}>)"
                        break
                elif page.verb is None and elem.tag in {OAI + v for v in VERBS}:
                    page.verb = _local(elem.tag)
                continue
            if elem.tag == OAI + "record":
                count += 1
                page.records.append(build_oai_record(elem, count, source))
                last_id = clean_text(elem.findtext(f"{OAI}header/{OAI}identifier")) or last_id
                elem.clear()  # keep memory flat on big pages
            elif elem.tag == OAI + "resumptionToken":
                page.resumption_token = clean_text(elem.text) or None
                size = (elem.get("completeListSize") or "").strip()
                page.complete_list_size = int(size) if size.isdigit() else None
            elif elem.tag == OAI + "error" and page.error is None:
                page.error = (elem.get("code") or "unknown", clean_text(elem.text))
    except ParseError as e:
        line, column = getattr(e, "position", ("?", "?"))
        if not data.strip():
            page.broken = "empty reply"
        elif page.root is None:
            page.broken = f"not XML (line {line}, column {column}: {e})"
        else:
            page.broken = (f"the document breaks off or is malformed at line {line}, column {column}; "
                           f"{count} records read before it")
    except DefusedXmlException as e:
        page.broken = f"refused XML: {e}"
    if page.broken:
        after = f" (after {last_id})" if last_id else ""
        page.records.append(Problem(source, f"record {count + 1}{after}", page.broken))
    return page


# --- live --------------------------------------------------------------------------------------------

def _raise_for_error(page: OaiPage, where: str) -> None:
    if page.error and page.error[0] != "noRecordsMatch":
        code, message = page.error
        raise SourceError(f"{where} answered OAI-PMH error {code}: {message}",
                          hint=ERROR_HINTS.get(code, SourceError.hint))


def _fetch_page(client: PoliteClient, base_url: str, params: dict, source: str) -> OaiPage:
    """One page, re-requested while it comes back unreadable (a connection cut mid-body behind a proxy
    still ends in a 200). The client's own retries cover 429/5xx and dropped connections."""
    tries = client.retries + 1
    for _ in range(tries):
        response = client.get(base_url, params, ok_statuses=(400,))  # some endpoints send OAI errors as 400
        page = parse_oai_page(response.content, source)
        _raise_for_error(page, base_url)
        if response.status_code >= 400:
            raise SourceError(f"{base_url} answered HTTP {response.status_code} for {params}")
        if not page.broken:
            return page
    raise SourceError(f"{base_url} sent an unreadable page {tries} times: {page.broken}",
                      hint="arXiv may be overloaded; run the same command again to resume from this page")


def fetch_oai(client: PoliteClient, base_url: str, *, metadata_prefix: str = "arXivRaw",
              from_date: str | None = None, until_date: str | None = None, set_spec: str | None = None,
              start_token: str | None = None, source: str = "oai") -> Iterator[Record]:
    """Harvest ListRecords: each page's records, then a flushing Checkpoint(next resumption token), so
    a page and its resume point commit together; the last page's checkpoint is "" (start over).

    `from_date`/`until_date` (YYYY-MM-DD, inclusive) select on the OAI datestamp, the day a record last
    changed upstream. `start_token` resumes a harvest; the token carries every other argument.
    noRecordsMatch (a weekend, an empty range) is an empty harvest; other OAI errors raise SourceError."""
    token = start_token
    while True:
        if token:
            params = {"verb": "ListRecords", "resumptionToken": token}
        else:
            params = {"verb": "ListRecords", "metadataPrefix": metadata_prefix}
            for name, value in (("from", from_date), ("until", until_date), ("set", set_spec)):
                if value:
                    params[name] = value
        page = _fetch_page(client, base_url, params, source)
        if page.error:  # only noRecordsMatch gets here
            return
        yield from page.records
        token = page.resumption_token
        yield Checkpoint(token or "", flush=True)
        if not token:
            return


# --- the source ------------------------------------------------------------------------------------

def _is_path(target: str) -> bool:
    return target.endswith((".xml", ".xml.gz")) or Path(target).expanduser().is_file()


def _prefix(opts: dict) -> str:
    text = (opts.get("prefix") or "arXivRaw").strip()
    for prefix in PREFIXES:
        if text.lower() == prefix.lower():
            return prefix
    raise BadInput(f"unknown metadata prefix {text!r}", hint=ERROR_HINTS["cannotDisseminateFormat"])


def _date(opts: dict, name: str) -> str | None:
    text = (opts.get(name) or "").strip()
    if not text:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # OAI wants exactly this granularity
            raise ValueError(text)
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise BadInput(f"--{name} {text!r} is not a date", hint=DATE_HINT) from None


def _set(target: str, opts: dict) -> str | None:
    target = (target or "").strip()
    option = (opts.get("set") or "").strip()
    if option and target not in ("", "all", option):
        raise BadInput(f"two sets given: {target!r} and --set {option!r}", hint="give the set once")
    spec = option or target
    if spec in ("", "all"):
        return None
    if "." in spec or " " in spec:
        # arXiv answers an unknown set with noRecordsMatch, which would look like an empty day
        raise BadInput(f"{spec!r} is not an OAI set",
                       hint="sets are archives such as cs, math, physics:hep-th (not categories such as cs.LG)")
    return spec


def _live_args(target: str, opts: dict) -> tuple[str, str | None, str | None, str | None]:
    prefix, since, until = _prefix(opts), _date(opts, "from"), _date(opts, "until")
    if since and until and since > until:
        raise BadInput(f"--from {since} is after --until {until}", hint=DATE_HINT)
    return prefix, _set(target, opts), since, until


def open_oai(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    """A saved ListRecords reply (parsed offline) or a live harvest of a set from settings.oai_url."""
    if _is_path(target):
        stream = open_binary(target)
        try:
            page = parse_oai_page(stream.read())
        finally:
            stream.close()
        if page.root not in (None, "OAI-PMH"):
            raise SourceError(f"{target} is not an OAI-PMH reply: {page.broken}",
                              hint="save a ListRecords reply, e.g. from <oai_url>?verb=ListRecords&…")
        _raise_for_error(page, target)
        if page.verb == "ListIdentifiers":
            raise SourceError(f"{target} is a ListIdentifiers reply: it has ids but no titles or abstracts",
                              hint="save a ListRecords reply instead")
        yield from page.records
        return
    prefix, set_spec, since, until = _live_args(target, opts)
    with PoliteClient.from_settings(settings) as client:
        yield from fetch_oai(client, settings.oai_url, metadata_prefix=prefix, from_date=since,
                             until_date=until, set_spec=set_spec, start_token=start or None)


def resume_key(target: str, opts: dict) -> str | None:
    """A live harvest resumes from its saved resumption token; a saved file is one page, re-read whole."""
    if _is_path(target):
        return None
    prefix, set_spec, since, until = _live_args(target, opts)
    return f"oai:{prefix}:{set_spec or 'all'}:{since or ''}:{until or ''}"


SOURCES = [
    SourceSpec(
        name="oai", help="arXiv OAI-PMH harvest (ListRecords): papers whose metadata changed in a date range",
        example="papersift ingest oai cs --from 2024-01-25 --until 2024-01-26",
        target_help="an OAI set (cs, math, physics:hep-th … or all), or a saved ListRecords XML reply",
        open=open_oai, resume_key=resume_key,
        options=(("from", ("first OAI datestamp, YYYY-MM-DD: the day a record last changed upstream, "
                           "not its submission day")),
                 ("until", "last OAI datestamp, YYYY-MM-DD (inclusive)"),
                 ("set", "OAI set, the same as giving it as TARGET (e.g. physics:hep-th)"),
                 ("prefix", "metadata format: arXivRaw (default), arXiv or oai_dc")),
    ),
]
