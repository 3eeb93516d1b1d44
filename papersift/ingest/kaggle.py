"""The Kaggle arXiv metadata snapshot (`arxiv-metadata-oai-snapshot.json`): JSON lines, one paper a line,
2.7M lines and ~4 GB. It is streamed line by line with a checkpoint after every line, so memory stays
flat and an interrupted ingest resumes at the next line.

Speed matters here (the target is ≥ 5,000 papers/s parse + upsert), so the per-line work is kept lean:
one `json.loads`, string splits instead of date parsers, and a single-pass LaTeX accent converter that
only runs on text containing a backslash or a brace. pylatexenc (`text.latex_to_text`) gives the same
result on these fields but costs milliseconds per abstract, and a third of arXiv abstracts hold TeX.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from typing import Iterable, Iterator

from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.ingest.base import Checkpoint, Record, SourceSpec, file_resume_key, numbered_lines, open_binary
from papersift.ingest.text import clean_text, parse_date, split_arxiv_categories
from papersift.models import Paper, Problem

# --- LaTeX in titles, abstracts and author strings -------------------------------------------------

_COMBINING = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
    "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b", "k": "\u0328", "r": "\u030a",
}
_LETTERS = {
    "ss": "ß", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
    "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ",
}
# One alternation scanned once, left to right. Math is matched first so it is kept verbatim (as
# latex_to_text does with math_mode="verbatim"); unknown macros keep their braced arguments so
# `\cite{x}` does not turn into `\citex`; every other brace is case protection and is dropped.
# The leading lookahead lets the engine skip plain characters with one test instead of one per
# alternative: five times faster on real abstracts.
_TEX = re.compile(
    r"(?=[$\\{}])(?:"
    r"(?P<math>\$\$.+?\$\$|\$.+?\$|\\\[.+?\\\]|\\\(.+?\\\))"
    r"|\\(?P<acc>['`^\"~=.])\s*(?:\{\s*\\?(?P<a1>[A-Za-z])\s*\}|\\?(?P<a2>[A-Za-z]))"
    r"|\\(?P<wacc>[cvuHkr])(?:\s*\{\s*\\?(?P<w1>[A-Za-z])\s*\}|\s+(?P<w2>[A-Za-z]))"
    r"|\\(?P<sym>ss|aa|AA|ae|AE|oe|OE|o|O|l|L|i|j)(?![A-Za-z])\s?"
    r"|\\(?P<esc>[&%$#_{}])"
    r"|(?P<style>\\(?:emph|text(?:it|bf|rm|sf|tt|sc|up|sl)|mbox)\s*(?=\{)|\\(?:it|em|bf|rm|sl|sc|tt|sf)\b\s*)"
    r"|(?P<macro>\\[A-Za-z]+\*?(?:\{[^{}]*\})*)"
    r"|(?P<newline>\\\\|\\(?=\s))"
    r"|[{}])",
    re.S,
)


def _tex_piece(m: re.Match) -> str:
    if m["math"] is not None or m["macro"] is not None:
        return m.group()
    if m["acc"] is not None or m["wacc"] is not None:
        accent = m["acc"] or m["wacc"]
        base = m["a1"] or m["a2"] or m["w1"] or m["w2"]
        return unicodedata.normalize("NFC", base + _COMBINING[accent])
    if m["sym"] is not None:
        return _LETTERS[m["sym"]]
    if m["esc"] is not None:
        return m["esc"]
    if m["newline"] is not None:
        return " "
    return ""  # a style command or a case-protecting brace


def detex(text: str | None) -> str:
    """`Gr\\"obner` → `Gröbner`, `{Ki(z)}` → `Ki(z)`, `{\\it x}` → `x`; math and unknown macros kept;
    whitespace collapsed. Text without a backslash or a brace only has its whitespace cleaned."""
    if not text:
        return ""
    if "\\" not in text and "{" not in text:
        return clean_text(text)
    return clean_text(_TEX.sub(_tex_piece, text))


# --- fields ----------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _version_date(text) -> dt.date:
    """`Mon, 2 Apr 2007 19:18:42 GMT`, the one form the snapshot uses, by splitting: about ten times
    faster than email.utils. Anything else goes through parse_date; ValueError if unreadable."""
    if not isinstance(text, str):
        raise ValueError(f"unreadable date {text!r}")
    parts = text.split()
    if len(parts) >= 4 and parts[0].endswith(","):
        month = _MONTHS.get(parts[2])
        if month and parts[1].isdigit() and parts[3].isdigit():
            try:
                return dt.date(int(parts[3]), month, int(parts[1]))
            except ValueError:
                raise ValueError(f"unreadable date {text!r}") from None
    date = parse_date(text)
    if date is None:
        raise ValueError("empty date")
    return date


def _versions(versions) -> tuple[dt.date | None, dt.date | None, int | None]:
    """(v1 date, latest version's date, latest version number) from `versions`; ValueError if bad."""
    if not versions:
        return None, None, None
    if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
        raise ValueError("versions is not a list of objects")
    first = _version_date(versions[0].get("created"))
    last = _version_date(versions[-1].get("created")) if len(versions) > 1 else first
    label = versions[-1].get("version")
    number = len(versions)
    if isinstance(label, str) and label[1:].isdigit():
        number = int(label[1:])
    return first, last, number


def _name(entry) -> str:
    """[last, first, suffix, (affiliation)] → `First Last Suffix`. The snapshot has these already in
    Unicode, which is why they are preferred over the LaTeX `authors` string."""
    if not isinstance(entry, list):
        return ""
    parts = [p for p in (entry[1:2] + entry[0:1] + entry[2:3]) if isinstance(p, str) and p]
    name = " ".join(parts)
    return detex(name) if ("\\" in name or "{" in name) else clean_text(name)


_PARENS = re.compile(r"\([^()]*\)")
_AUTHOR_SEPARATORS = re.compile(r",|\band\b")


def _authors_from_string(text: str) -> tuple[str, ...]:
    """`A. One, B. Two (Univ X) and C. Three` → names; affiliations in (nested) parentheses dropped."""
    text = detex(text)
    previous = None
    while previous != text:
        previous, text = text, _PARENS.sub("", text)
    return tuple([n for n in (clean_text(p) for p in _AUTHOR_SEPARATORS.split(text)) if n])


def _authors(obj: dict) -> tuple[str, ...]:
    parsed = obj.get("authors_parsed")
    if isinstance(parsed, list):
        # tuple(list), not tuple(generator): a tuple grown from a generator is resized, and on being
        # freed lands in a free list of another size, so those caches creep up for ~4 MB per run
        names = tuple([n for n in map(_name, parsed) if n])
        if names:
            return names
    text = obj.get("authors")
    return _authors_from_string(text) if isinstance(text, str) else ()


# Withdrawal notices read "This paper has been withdrawn by the author(s) …", "withdrawn due to …",
# or just "Withdrawn". Scientific uses ("water withdrawn from the aquifer") are why abstracts are only
# checked when they are short, as withdrawal notices are.
_WITHDRAWN = re.compile(
    r"\b(?:has|have|had)\s+been\s+withdrawn\b|\b(?:paper|article|manuscript|submission|preprint)\s+"
    r"(?:is\s+|was\s+)?withdrawn\b|\bwithdrawn\s+(?:by\s+the|due\s+to|because|for\s+(?:the\s+)?reasons?)\b"
    r"|^\W*withdrawn\b",
    re.IGNORECASE,
)
_SHORT_ABSTRACT = 600


def _is_withdrawn(comment: str, abstract: str) -> bool:
    for text in (comment, abstract if len(abstract) < _SHORT_ABSTRACT else ""):
        if text and "withdr" in text.lower() and _WITHDRAWN.search(text):
            return True
    return False


def _text(value) -> str:
    return detex(value) if isinstance(value, str) else ""


def _plain(value) -> str | None:
    return (clean_text(value) or None) if isinstance(value, str) else None


# --- records ---------------------------------------------------------------------------------------

def _arxiv_id(raw_id) -> tuple[str, int | None] | None:
    """Nearly every id is a bare new-style `0704.0001`: recognised without parse_arxiv_id's regexes,
    with the same era rule (four-digit numbers until 1412, five from 1501; months 01-12).
    Everything else, old-style ids included, goes through parse_arxiv_id."""
    if not isinstance(raw_id, str):
        return None
    if len(raw_id) in (9, 10) and raw_id[4] == "." and raw_id[:4].isdigit() and raw_id[5:].isdigit() \
            and (len(raw_id) == 10) == (raw_id[:4] >= "1501") and "01" <= raw_id[2:4] <= "12":
        return raw_id, None
    return parse_arxiv_id(raw_id)


def parse_kaggle_record(obj: dict, source: str = "kaggle", position: str = "") -> Paper | Problem:
    """One snapshot record → a Paper, or a Problem saying why it cannot be used."""
    raw_id = obj.get("id")
    parsed = _arxiv_id(raw_id)
    if not parsed:
        return Problem(source, position, f"missing or malformed arXiv id {raw_id!r}")
    arxiv_id = parsed[0]
    title = _text(obj.get("title"))
    if not title:
        return Problem(source, position, f"{arxiv_id}: missing title")
    try:
        submitted, updated, version = _versions(obj.get("versions"))
        if updated is None:  # no version history: the metadata's own update day is the best we have
            updated = parse_date(obj.get("update_date")) if isinstance(obj.get("update_date"), str) else None
    except ValueError as e:
        return Problem(source, position, f"{arxiv_id}: {e}")

    abstract = _text(obj.get("abstract"))
    comment = _plain(obj.get("comments"))
    signals: dict = {}
    links: dict = {}
    categories, other_classes = split_arxiv_categories(obj.get("categories") or ())
    if other_classes:
        signals["classes"] = list(other_classes)
    doi = None
    doi_text = obj.get("doi")
    if isinstance(doi_text, str) and doi_text.strip():
        # a few records list several DOIs separated by spaces: the first is the paper's own
        dois = [d for d in map(normalize_doi, doi_text.split()) if d]
        if dois:
            doi = dois[0]
            links["doi"] = f"https://doi.org/{doi}"
            if len(dois) > 1:
                signals["dois"] = dois
    for key, name in (("report-no", "report_no"), ("license", "license")):
        value = _plain(obj.get(key))
        if value:
            signals[name] = value

    return Paper(
        title=title, arxiv_id=arxiv_id, version=version or parsed[1], doi=doi, abstract=abstract,
        authors=_authors(obj), categories=categories, submitted=submitted, updated=updated, source=source,
        links=links, comment=comment, journal_ref=_plain(obj.get("journal-ref")),
        withdrawn=_is_withdrawn(comment or "", abstract), signals=signals,
    )


def parse_kaggle(lines: Iterable[tuple[int, str | Problem]], source: str = "kaggle") -> Iterator[Record]:
    """Records of the snapshot given (line number, text) pairs, with a Checkpoint after every line."""
    loads = json.loads
    for lineno, line in lines:
        if isinstance(line, Problem):
            yield line
        elif line and not line.isspace():
            try:
                obj = loads(line)
            except json.JSONDecodeError as e:
                yield Problem(source, f"line {lineno}", f"not JSON: {e.msg} (column {e.colno})")
            except RecursionError:
                yield Problem(source, f"line {lineno}", "not JSON: nested too deeply")
            else:
                if isinstance(obj, dict):
                    yield parse_kaggle_record(obj, source, f"line {lineno}")
                else:
                    yield Problem(source, f"line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
        yield Checkpoint(str(lineno))


def open_kaggle(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    """Stream the snapshot file (plain or .gz), skipping the lines before the saved checkpoint."""
    skip = int(start) if start and start.isdigit() else 0
    stream = open_binary(target)
    try:
        yield from parse_kaggle(numbered_lines(stream, "kaggle", skip), "kaggle")
    finally:
        stream.close()


SOURCES = [
    SourceSpec(
        name="kaggle",
        help="the Kaggle arXiv metadata snapshot (arxiv-metadata-oai-snapshot.json, JSON lines, .gz or plain)",
        example="papersift ingest kaggle ~/data/arxiv-metadata-oai-snapshot.json",
        target_help="path to arxiv-metadata-oai-snapshot.json (or a .jsonl/.gz copy)",
        open=open_kaggle,
        resume_key=lambda t, o: file_resume_key("kaggle", t), parallel=True,
    ),
]
