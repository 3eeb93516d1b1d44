"""A reader's own library: BibTeX/BibLaTeX (Zotero Better BibTeX, JabRef, BibDesk, Mendeley, NASA ADS),
RIS (Zotero, Mendeley) and CSL JSON (Zotero / Better CSL JSON) exports.

Each entry becomes a `Paper` whose identifiers are dug out of wherever the exporter put them (eprint,
archivePrefix, a URL, a note, an arXiv DOI …), so the catalog's upsert can match it to a paper it
already holds by arXiv id, then DOI, then title + first author. The `parse_*` functions are pure.
A broken entry is a `Problem` with its line number; the entries around it still come out.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Iterable, Iterator

from papersift.errors import SourceError
from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.ingest.base import Record, SourceSpec, open_binary
from papersift.ingest.text import clean_text, latex_to_text, split_arxiv_categories
from papersift.models import Paper, Problem

# ---------------------------------------------------------------- shared: identifiers, names, text

_ID = r"(\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)"
# `arXiv:1305.4904 [quant-ph]`, `arXiv preprint arXiv:1706.03762`, `http://arxiv.org/abs/1401.2910`
_ARXIV_IN_TEXT = re.compile(rf"(?:arxiv\.org/(?:abs|pdf)/|\barxiv:\s*){_ID}", re.IGNORECASE)
_ARXIV_CLASS_IN_TEXT = re.compile(r"\barxiv:\s*\S+\s*\[([\w.-]+)\]", re.IGNORECASE)
_DOI_IN_TEXT = re.compile(r"(?:doi\.org/|\bdoi:\s*)(10\.\d{4,9}/[^\s\"<>{}]+)", re.IGNORECASE)
_YEAR = re.compile(r"\b(\d{4})\b")
# A journal field that only says "this is on arXiv" (Google Scholar, ADS, DBLP's CoRR) is no journal ref.
_PREPRINT_VENUE = re.compile(r"^\s*(?:arxiv|corr\b)", re.IGNORECASE)
# Archives that are never a category by themselves (cs.LG is; cs is not), so `[cs]` names no category.
_GROUP_ARCHIVES = {"cs", "math", "physics", "q-bio", "q-fin", "stat", "eess", "econ"}


def _find_arxiv(ids: Iterable[str | None], texts: Iterable[str | None]) -> tuple[str, int | None] | None:
    """(id, version) of the first arXiv paper named by a field of `ids` (a bare id, an arXiv DOI or URL),
    else the first `arXiv:…` or arxiv.org link inside `texts` (notes, journal …), where a bare number
    could be anything (a report number, a page range)."""
    ids = list(ids)
    for text in ids:
        parsed = parse_arxiv_id(text.strip()) if text else None
        if parsed:
            return parsed
    for text in (*ids, *texts):
        for m in _ARXIV_IN_TEXT.finditer(text or ""):
            parsed = parse_arxiv_id(m.group(1))
            if parsed:
                return parsed
    return None


def _find_doi(texts: Iterable[str | None]) -> str | None:
    """The first DOI in `texts`: a doi field (any case, resolver prefix or not), else a doi.org link."""
    for text in texts:
        if not text:
            continue
        for word in text.split():  # a doi field sometimes holds two DOIs; the first one wins
            doi = normalize_doi(word)
            if doi:
                return doi
        m = _DOI_IN_TEXT.search(text)
        if m and normalize_doi(m.group(1)):
            return normalize_doi(m.group(1))
    return None


def _categories(codes: Iterable[str | None]) -> tuple[str, ...]:
    wanted = [c.strip() for c in codes if c and c.strip() and c.strip().lower() not in _GROUP_ARCHIVES]
    return split_arxiv_categories(wanted)[0]


def _identifiers(arxiv: tuple[str, int | None] | None,
                 doi: str | None) -> tuple[str | None, int | None, str | None]:
    """(arxiv_id, version, doi). An arXiv DOI (10.48550/arXiv.…) becomes the arXiv id and is not kept as
    the DOI: it carries nothing the id does not, and stored as the DOI it would overwrite the journal DOI
    that the catalog's arXiv record may hold."""
    if doi and doi.startswith("10.48550/arxiv."):
        arxiv = arxiv or parse_arxiv_id(doi)
        doi = None
    return (arxiv[0], arxiv[1], doi) if arxiv else (None, None, doi)


def _links(arxiv_id: str | None, doi: str | None, url: str | None) -> dict[str, str]:
    links = {}
    if doi:
        links["doi"] = f"https://doi.org/{doi}"
    if url and not arxiv_id and url.startswith(("http://", "https://")):
        links["abs"] = url  # an arXiv paper's pages follow from its id
    return links


def _signals(citekey: str | None, year: str | None, keywords: Iterable[str]) -> dict:
    signals: dict = {}
    if citekey:
        signals["citekey"] = citekey
    m = _YEAR.search(year or "")
    if m:
        signals["year"] = m.group(1)
    keywords = list(dict.fromkeys(k for k in (clean_text(k) for k in keywords) if k))
    if keywords:
        signals["keywords"] = keywords
    return signals


def _arxiv_comment(notes: Iterable[str | None]) -> str | None:
    """Zotero keeps an arXiv paper's author comment as a note `Comment: 14 pages, 6 figures`."""
    for note in notes:
        text = clean_text(note)
        if text.lower().startswith("comment:"):
            return text[len("comment:"):].strip() or None
    return None


def _journal_ref(text: str | None) -> str | None:
    text = clean_text(text)
    return text if text and not _PREPRINT_VENUE.match(text) else None


def _tex(text: str | None) -> str:
    """latex_to_text, with a fast path for the common case of plain text in case-protecting braces
    (pylatexenc takes about half a millisecond a call, which adds up over a library of thousands)."""
    if not text:
        return ""
    if not any(mark in text for mark in ("\\", "$", "~", "``", "''", "--")):
        return clean_text(text.replace("{", "").replace("}", ""))
    return latex_to_text(text)


def _split_outside_braces(text: str, pattern: re.Pattern) -> list[str]:
    """Split `text` at `pattern`, except inside {…}, where BibTeX protects `and` and commas."""
    parts, last, depth, counted = [], 0, 0, 0
    for m in pattern.finditer(text):
        depth += text.count("{", counted, m.start()) - text.count("}", counted, m.start())
        counted = m.start()
        if depth == 0:
            parts.append(text[last:m.start()])
            last = m.end()
    parts.append(text[last:])
    return parts


_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_COMMA = re.compile(r",")


def _person(name: str) -> str:
    """`Last, First` (or `Last, Jr, First`) → `First Last`; `{Corporate Name}` stays whole."""
    bits = [b.strip() for b in _split_outside_braces(name, _COMMA)]
    if len(bits) == 1:
        return _tex(name)
    last, first = bits[0], bits[-1]
    if len(bits) == 3:
        last = f"{bits[0]} {bits[1]}"
    return clean_text(f"{_tex(first)} {_tex(last)}")


def _bibtex_names(names: str | None) -> tuple[str, ...]:
    out = []
    for part in _split_outside_braces(clean_text(names), _AND):
        if part.strip().lower() in ("", "others", "et al.", "et al"):
            continue
        name = _person(part)
        if name:
            out.append(name)
    return tuple(out)


# ---------------------------------------------------------------- decoding

_ENCODING_HEADER = re.compile(rb"^%+[ \t]*Encoding:[ \t]*([A-Za-z0-9_.:-]+)", re.MULTILINE)


def decode_library(data: bytes, source: str = "library") -> tuple[str, list[Problem]]:
    """The text of an export file, and a Problem when it had to be guessed.

    UTF-8 (BOM or not) is the norm. JabRef writes `% Encoding: ISO8859_1` (a Java charset name) and we
    honour it, unless the bytes are non-ASCII valid UTF-8: a file re-saved by another editor keeps
    JabRef's stale header, and latin-1 text is almost never valid UTF-8 by accident. Anything else that
    is not UTF-8 is read as cp1252 (what Windows exporters write) with one Problem naming the first
    byte that did not decode, so the reader knows to check the accents."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            pass
    data = data.removeprefix(codecs.BOM_UTF8)
    problems: list[Problem] = []
    try:
        text, utf8_error = data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        text, utf8_error = None, e
    header = _ENCODING_HEADER.search(data[:4096])
    if header:
        name = header.group(1).decode("ascii")
        line = "line {}".format(data.count(b"\n", 0, header.start()) + 1)
        try:
            encoding = codecs.lookup(name).name
        except LookupError:
            encoding = None
            problems.append(Problem(source, line, f"unknown encoding {name!r} in the file's header; ignored"))
        if encoding and encoding != "utf-8" and (text is None or data.isascii()):
            # browsers read latin-1 labels as cp1252 too: same letters, plus the curly quotes Windows adds
            for candidate in (("cp1252", encoding) if encoding == "iso8859-1" else (encoding,)):
                try:
                    return data.decode(candidate), problems
                except (UnicodeDecodeError, LookupError):  # LookupError: a header naming e.g. base64
                    continue
            problems.append(Problem(source, line, f"the file is not valid {name} as its header says"))
    if text is not None:
        return text, problems
    offset = utf8_error.start
    line = data.count(b"\n", 0, offset) + 1
    try:
        text, used = data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:  # cp1252 leaves five bytes undefined; latin-1 maps every byte
        text, used = data.decode("latin-1"), "latin-1"
    problems.append(Problem(source, f"line {line}",
                            f"not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); read as {used}"))
    return text, problems


# ---------------------------------------------------------------- BibTeX / BibLaTeX

_ENTRY_START = re.compile(r"@[ \t]*([A-Za-z][\w-]*)[ \t\r\n]*([{(])")
_NEXT_ENTRY = r"\n(?=[ \t]*@[ \t]*[A-Za-z][\w-]*[ \t]*[{(])"
_INSIDE = {"{": re.compile(r"[{}]|" + _NEXT_ENTRY), "(": re.compile(r'[{})"]|' + _NEXT_ENTRY)}
_NAME = re.compile(r"[^\s\"#%'(),={}]+")  # a field name, a macro name or a bare number
_GAP = re.compile(r"(?:\s+|%[^\n]*)*")  # Biber and JabRef take % to the end of a line as a comment here
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = "January February March April May June July August September October November December".split()

# NASA ADS exports name journals by AASTeX macros (`journal = {\aap}`), which LaTeX would expand.
_AAS_JOURNALS = {
    "aj": "Astronomical Journal", "apj": "Astrophysical Journal", "apjl": "Astrophysical Journal Letters",
    "apjs": "Astrophysical Journal Supplement Series", "aap": "Astronomy and Astrophysics",
    "araa": "Annual Review of Astronomy and Astrophysics", "nat": "Nature",
    "mnras": "Monthly Notices of the Royal Astronomical Society", "prl": "Physical Review Letters",
    "pasp": "Publications of the Astronomical Society of the Pacific", "prd": "Physical Review D",
    "jcap": "Journal of Cosmology and Astroparticle Physics",
}


def _split_bibtex(text: str) -> Iterator[tuple[str, str, int, bool]]:
    """(entry type, entry text, line it starts on, whether its braces close) for each top-level @… item.

    Each entry is parsed alone, so that one unbalanced brace cannot swallow the rest of the file:
    an entry whose braces never close ends where a line starts the next `@type{`."""
    pos, line, counted = 0, 1, 0
    while True:
        m = _ENTRY_START.search(text, pos)
        if not m:
            return
        start = m.start()
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].lstrip().startswith("%"):  # JabRef, BibDesk and Biber: % lines are comments
            pos = text.find("\n", start)
            if pos < 0:
                return
            continue
        line += text.count("\n", counted, start)
        counted = start
        opener = m.group(2)
        depth, end, complete, quoted = (1 if opener == "{" else 0), len(text), False, False
        for t in _INSIDE[opener].finditer(text, m.end()):
            c = t.group()
            if c == '"':  # in an @entry(…), a quoted value may hold `)`: "(re)consideration"
                quoted = not quoted if depth == 0 else quoted
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0 and opener == "{":
                    end, complete = t.end(), True
                    break
            elif c == ")":
                if depth == 0 and not quoted:
                    end, complete = t.end(), True
                    break
            else:
                end = t.start()
                break
        yield m.group(1).lower(), text[start:end], line, complete
        pos = end


class _BibSyntaxError(ValueError):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.pos = pos


def _matching(text: str, start: int, pattern: re.Pattern, closer: str) -> int:
    """The index after the `closer` that ends the group opened at `start`, braces nested; -1 if none."""
    depth = 0
    for t in pattern.finditer(text, start + 1):
        c = t.group()
        if c == closer and depth == 0:
            return t.end()
        depth += 1 if c == "{" else -1 if c == "}" else 0
        if depth < 0:
            return -1
    return -1


_BRACE_TOKENS = re.compile(r"[{}]")
_QUOTE_TOKENS = re.compile(r'[{}"]')


def _read_value(text: str, i: int, macros: dict[str, str]) -> tuple[str, int]:
    """A field value: `{…}`, `"…"`, a number or a macro, joined by `#`. An undefined macro reads as its
    own name, as BibTeX prints it (BBT writes `journal = IEEE_J_WC`, defined in IEEE's own .bib)."""
    parts = []
    while True:
        i = _GAP.match(text, i).end()
        c = text[i:i + 1]
        if c in ("{", '"'):
            end = _matching(text, i, _BRACE_TOKENS if c == "{" else _QUOTE_TOKENS, "}" if c == "{" else '"')
            if end < 0:
                raise _BibSyntaxError("a value's braces or quotes do not close", i)
            parts.append(text[i + 1:end - 1])
            i = end
        else:
            m = _NAME.match(text, i)
            if not m:
                raise _BibSyntaxError("expected a value", i)
            parts.append(macros.get(m.group().lower(), m.group()))
            i = m.end()
        i = _GAP.match(text, i).end()
        if text[i:i + 1] != "#":
            return "".join(parts), i
        i += 1


def _parse_bibtex_entry(chunk: str, kind: str, macros: dict[str, str]) -> dict[str, str]:
    """The fields of one complete `@type{key, name = value, …}` (or its `@string`, added to `macros`).
    Field names come lower-cased; the citation key is under "ID" (bibtexparser's convention).

    We parse entries ourselves rather than with bibtexparser: it silently turns an entry it cannot
    read into a comment, and at ~4 ms an entry it takes most of a minute over a 10,000-entry library."""
    m = _ENTRY_START.match(chunk)
    closer = "}" if m.group(2) == "{" else ")"
    i, fields = m.end(), {}
    comma = chunk.find(",", i)
    key = chunk[i:comma if comma >= 0 else len(chunk) - 1].strip()
    if kind != "string" and "=" not in key:  # EndNote writes entries with no key at all
        if any(c.isspace() or c in "{}\"" for c in key):  # Mendeley leaves it empty: `@article{,`
            raise _BibSyntaxError(f"expected a citation key without spaces, found {key[:40]!r}", i)
        fields["ID"] = key
        if comma < 0:
            return fields
        i = comma + 1
    while True:
        i = _GAP.match(chunk, i).end()
        if chunk[i:i + 1] == closer:
            return fields
        if chunk[i:i + 1] == ",":  # an empty field between two commas
            i += 1
            continue
        name = _NAME.match(chunk, i)
        if not name:
            raise _BibSyntaxError(f"expected a field name, found {chunk[i:i + 20]!r}", i)
        i = _GAP.match(chunk, name.end()).end()
        if chunk[i:i + 1] != "=":
            raise _BibSyntaxError(f"expected '=' after {name.group()!r}", i)
        value, i = _read_value(chunk, i + 1, macros)
        if kind == "string":
            macros[name.group().lower()] = value
        else:
            fields.setdefault(name.group().lower(), value)  # BibTeX keeps the first of a repeated field
        if chunk[i:i + 1] == ",":
            i += 1
        elif chunk[i:i + 1] != closer:
            raise _BibSyntaxError(f"expected ',' or {closer!r} after the value of {name.group()!r}", i)


def _bibtex_journal(value: str | None) -> str | None:
    if not value:
        return None
    m = re.fullmatch(r"\s*\\(\w+)\s*", value)
    if m:
        return _AAS_JOURNALS.get(m.group(1).lower(), m.group(1))
    return _journal_ref(_tex(value))


def bibtex_entry_to_paper(fields: dict, source: str = "bibtex", label: str = "",
                          line: int = 0) -> Paper | Problem:
    """One entry's fields as a Paper: lower-case names, the citation key under "ID" (the shape
    bibtexparser gives too)."""
    f = {k: (v.strip() if isinstance(v, str) else v) for k, v in fields.items()}
    title = _tex(f.get("title"))
    if not title:
        return Problem(source, label, f"no title (line {line})")
    prefix = (f.get("archiveprefix") or f.get("eprinttype") or "").lower()
    eprint = f.get("eprint") if prefix in ("", "arxiv") else None  # not a PubMed or HAL eprint
    urls = [f.get("url")] + [v for k, v in sorted(f.items()) if k.startswith("bdsk-url")]
    texts = [f.get("note"), f.get("howpublished"), f.get("journal"), f.get("journaltitle"), f.get("annote")]
    arxiv = _find_arxiv([eprint, f.get("arxivid"), f.get("arxiv"), f.get("doi"), *urls], texts)
    doi = _find_doi([f.get("doi"), *urls, f.get("note")])
    arxiv_id, version, doi = _identifiers(arxiv, doi)
    classes = [f.get("primaryclass"), f.get("eprintclass")]
    classes += [m.group(1) for t in texts if t for m in _ARXIV_CLASS_IN_TEXT.finditer(t)]
    keywords = re.split(r"[,;]", f.get("keywords") or f.get("keyword") or "")
    return Paper(
        title=title, arxiv_id=arxiv_id, version=version, doi=doi, abstract=_tex(f.get("abstract")),
        authors=_bibtex_names(f.get("author")), categories=_categories(classes) if arxiv_id else (),
        source=source, links=_links(arxiv_id, doi, f.get("url")), comment=_arxiv_comment([f.get("note")]),
        journal_ref=_bibtex_journal(f.get("journal") or f.get("journaltitle") or f.get("booktitle")),
        signals=_signals(f.get("ID"), f.get("year") or f.get("date"), keywords),
    )


def parse_bibtex(text: str, source: str = "bibtex") -> Iterator[Paper | Problem]:
    """Every entry of a BibTeX/BibLaTeX file as a Paper, or a Problem saying where and why it is unusable."""
    macros = dict(zip(_MONTHS, _MONTH_NAMES))
    n = 0
    for kind, chunk, line, complete in _split_bibtex(text):
        if kind in ("comment", "preamble"):  # JabRef keeps its groups tree in @comment
            continue
        label = "@string"
        if kind != "string":
            n += 1
            key = re.match(r"@[^{(]*[{(]\s*([^,\n{}()]{1,80})", chunk)
            label = f"entry {n} ({key.group(1).strip()})" if key else f"entry {n}"
        if not complete:
            yield Problem(source, f"line {line}", f"{label}: unbalanced braces, it never closes; skipped")
            continue
        try:
            fields = _parse_bibtex_entry(chunk, kind, macros)
        except _BibSyntaxError as e:
            where = line + chunk.count("\n", 0, e.pos)
            yield Problem(source, f"line {where}", f"{label}: {e}; skipped")
            continue
        if kind != "string":
            yield bibtex_entry_to_paper(fields, source, label, line)


# ---------------------------------------------------------------- RIS

_RIS_LINE = re.compile(r"^([A-Z][A-Z0-9])[ \t]{1,2}-(?:[ \t]|$)(.*)$")


def _ris_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, tag lines) per TY…ER record. A record missing its ER ends at the next TY (or the end):
    rispy would otherwise fold the next record's fields into it."""
    record: list[str] | None = None
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        m = _RIS_LINE.match(raw.lstrip("\ufeff"))
        tag = m.group(1) if m else None
        if tag == "TY":
            if record:
                yield start, record
            record, start = [], lineno
        if record is None:
            continue
        if tag == "ER":
            yield start, record
            record = None
            continue
        # rispy wants exactly `XX  - `; some exporters write one space
        record.append(f"{tag}  - {m.group(2)}" if m else raw)
    if record:
        yield start, record


def _as_list(value) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def ris_record_to_paper(rec: dict, source: str = "ris", label: str = "", line: int = 0) -> Paper | Problem:
    """One record as rispy maps it (title, authors, doi, urls, notes …) as a Paper."""
    title = clean_text(rec.get("title") or rec.get("primary_title") or rec.get("translated_title"))
    if not title:
        return Problem(source, label, f"no title (TI or T1) (line {line})")
    urls = _as_list(rec.get("urls"))
    notes = _as_list(rec.get("notes")) + _as_list(rec.get("note"))
    unknown = [v for values in (rec.get("unknown_tag") or {}).values() for v in values]
    journal_keys = ("alternate_title3", "secondary_title", "journal_name", "alternate_title2")  # JF T2 JO JA
    journal = next((rec.get(k) for k in journal_keys if rec.get(k)), None)
    arxiv = _find_arxiv([rec.get("doi"), *urls], [*notes, rec.get("accession_number"), journal, *unknown])
    doi = _find_doi([rec.get("doi"), *urls])
    arxiv_id, version, doi = _identifiers(arxiv, doi)
    classes = [m.group(1) for t in notes + [journal or ""] for m in _ARXIV_CLASS_IN_TEXT.finditer(t)]
    # RIS writes one person a line, `Last, First, Suffix`
    authors = []
    for name in _as_list(rec.get("authors")) + _as_list(rec.get("first_authors")):
        bits = [b.strip() for b in name.split(",")]
        person = clean_text(" ".join([*bits[1:2], bits[0], *bits[2:]]))
        if person and person not in authors:
            authors.append(person)
    year = rec.get("year") or rec.get("publication_year") or rec.get("date")
    return Paper(
        title=title, arxiv_id=arxiv_id, version=version, doi=doi,
        abstract=clean_text(rec.get("abstract") or rec.get("notes_abstract")), authors=tuple(authors),
        categories=_categories(classes) if arxiv_id else (), source=source,
        links=_links(arxiv_id, doi, urls[0] if urls else None), comment=_arxiv_comment(notes),
        journal_ref=_journal_ref(journal),
        signals=_signals(rec.get("id"), year, _as_list(rec.get("keywords"))),
    )


def parse_ris(text: str, source: str = "ris") -> Iterator[Paper | Problem]:
    """Every TY…ER record of a RIS file as a Paper or a Problem."""
    import rispy

    n = 0
    for line, lines in _ris_records(text):
        n += 1
        label = f"entry {n}"
        try:
            records = rispy.loads("\n".join(lines + ["ER  - "]))
        except Exception as e:  # noqa: BLE001 -- whatever rispy raises, the other records count
            yield Problem(source, f"line {line}", f"{label}: not valid RIS: {e}")
            continue
        if not records:
            yield Problem(source, f"line {line}", f"{label}: not valid RIS")
            continue
        rec = records[0]
        if rec.get("id"):
            label = f"entry {n} ({rec['id']})"
        yield ris_record_to_paper(rec, source, label, line)
    if n == 0 and text.strip():
        yield Problem(source, "line 1", "no RIS records found (each starts with a `TY  - ` line)")


# ---------------------------------------------------------------- CSL JSON

_TAG = re.compile(r"<[^>]+>")


def _csl_text(value) -> str:
    """CSL titles carry rich-text HTML (`<i>d.</i>`, `<span class="nocase">`): keep the words only."""
    return clean_text(html.unescape(_TAG.sub("", str(value)))) if value else ""


def _csl_person(person) -> str:
    if not isinstance(person, dict):
        return clean_text(str(person))
    if person.get("literal"):
        return clean_text(person["literal"])
    order = ("given", "dropping-particle", "non-dropping-particle", "family", "suffix")
    parts = (person.get(k) for k in order)
    return clean_text(" ".join(str(p) for p in parts if p))


def _csl_year(issued) -> str | None:
    if isinstance(issued, dict):
        parts = issued.get("date-parts")
        if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
            return str(parts[0][0])
        return str(issued.get("raw") or issued.get("literal") or "") or None
    return str(issued) if issued else None


def csl_item_to_paper(item: dict, source: str = "csl-json", label: str = "") -> Paper | Problem:
    """One CSL JSON item (title, author[{family, given}], DOI, URL, issued …) as a Paper."""
    title = _csl_text(item.get("title"))
    if not title:
        return Problem(source, label, "no title")
    fields = {k.lower(): (v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) else None)
              for k, v in item.items()}
    where = " ".join(fields.get(k) or "" for k in ("publisher", "archive", "genre", "source"))
    on_arxiv = "arxiv" in where.lower()  # Zotero: publisher arXiv, number 2301.00001
    numbers = [fields.get("number"), fields.get("archive_location")]
    arxiv = _find_arxiv([*(numbers if on_arxiv else ()), fields.get("doi"), fields.get("url")],
                        [*numbers, fields.get("note"), fields.get("container-title"), fields.get("id")])
    doi = _find_doi([fields.get("doi"), fields.get("url")])
    arxiv_id, version, doi = _identifiers(arxiv, doi)
    notes = [fields.get("note"), fields.get("number"), fields.get("container-title")]
    classes = [m.group(1) for t in notes if t for m in _ARXIV_CLASS_IN_TEXT.finditer(t)]
    authors = item.get("author") if isinstance(item.get("author"), list) else []
    return Paper(
        title=title, arxiv_id=arxiv_id, version=version, doi=doi, abstract=_csl_text(item.get("abstract")),
        authors=tuple(a for a in (_csl_person(p) for p in authors) if a),
        categories=_categories(classes) if arxiv_id else (), source=source,
        links=_links(arxiv_id, doi, fields.get("url")), comment=_arxiv_comment([fields.get("note")]),
        journal_ref=_journal_ref(fields.get("container-title")),
        signals=_signals(fields.get("citation-key") or fields.get("id"), _csl_year(item.get("issued")),
                         re.split(r"[,;]", fields.get("keyword") or "")),
    )


def parse_csl_json(text: str, source: str = "csl-json") -> Iterator[Paper | Problem]:
    """Every item of a CSL JSON array (a single item object is accepted too) as a Paper or a Problem."""
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        yield Problem(source, f"line {e.lineno}", f"not JSON: {e.msg} at column {e.colno}")
        return
    items = data if isinstance(data, list) else [data]
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            yield Problem(source, f"entry {n}", f"expected a JSON object, got {type(item).__name__}")
            continue
        key = item.get("citation-key") or item.get("id")
        yield csl_item_to_paper(item, source, f"entry {n} ({key})" if key else f"entry {n}")


# ---------------------------------------------------------------- sources

def _open_library(source: str, parse):
    def open_(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
        stream = open_binary(target)
        try:
            data = stream.read()
        except (EOFError, OSError) as e:  # a truncated .gz
            raise SourceError(f"cannot read {target}: {e}") from None
        finally:
            stream.close()
        text, problems = decode_library(data, source)
        yield from problems
        yield from parse(text, source)
    return open_


SOURCES = [
    SourceSpec(
        name="bibtex",
        help="a BibTeX/BibLaTeX library (Zotero Better BibTeX, JabRef, BibDesk, Mendeley, NASA ADS)",
        example="papersift ingest bibtex ~/Zotero/library.bib",
        target_help="path to the .bib file (.gz works too)", open=_open_library("bibtex", parse_bibtex),
    ),
    SourceSpec(
        name="ris", help="a RIS library export (Zotero, Mendeley, EndNote)",
        example="papersift ingest ris ~/Downloads/library.ris",
        target_help="path to the .ris file", open=_open_library("ris", parse_ris),
    ),
    SourceSpec(
        name="csl-json", help="a CSL JSON library export (Zotero, Better CSL JSON)",
        example="papersift ingest csl-json ~/Zotero/library.json",
        target_help="path to the .json file", open=_open_library("csl-json", parse_csl_json),
    ),
]
