"""The JSON-lines files in ../shared/data: `arxiv-daily` (arXiv papers with their first listing day)
and `acm-cr` (ACM papers keyed by DOI). Also the format of papersift's bundled sample."""

from __future__ import annotations

import json
from importlib import resources
from typing import Iterable, Iterator

from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.ingest.base import Checkpoint, Record, SourceSpec, file_resume_key, numbered_lines, open_binary
from papersift.ingest.text import clean_text, latex_to_text, parse_date, split_arxiv_categories, split_name_list
from papersift.models import Paper, Problem


def _json_lines(lines: Iterable[tuple[int, str | Problem]], source: str) -> Iterator[tuple[int, dict | Problem]]:
    for lineno, line in lines:
        if isinstance(line, Problem) or not line.strip():
            if isinstance(line, Problem):
                yield lineno, line
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, Problem(source, f"line {lineno}", f"not JSON: {e.msg} (column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield lineno, Problem(source, f"line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield lineno, obj


def parse_arxiv_daily_record(obj: dict, source: str = "arxiv-daily", position: str = "") -> Paper | Problem:
    parsed = parse_arxiv_id(str(obj.get("id") or ""))
    if not parsed:
        return Problem(source, position, f"missing or malformed arXiv id {obj.get('id')!r}")
    title = clean_text(obj.get("title"))
    if not title:
        return Problem(source, position, f"{parsed[0]}: missing title")
    try:
        listed = parse_date(obj.get("first_listed"))
    except ValueError as e:
        return Problem(source, position, f"{parsed[0]}: {e}")
    authors = obj.get("authors") or []
    if not isinstance(authors, list):
        return Problem(source, position, f"{parsed[0]}: authors is not a list")
    categories, other_classes = split_arxiv_categories(obj.get("categories") or [])
    return Paper(
        arxiv_id=parsed[0], version=parsed[1], title=title, abstract=clean_text(obj.get("abstract")),
        authors=tuple(clean_text(a) for a in authors if clean_text(a)), categories=categories,
        listed=listed, source=source, comment=clean_text(obj.get("comment")) or None,
        signals={"classes": list(other_classes)} if other_classes else {},
    )


def parse_arxiv_daily(lines: Iterable[tuple[int, str | Problem]], source: str = "arxiv-daily") -> Iterator[Record]:
    """Records of an arxiv-daily JSON-lines file, given (line number, text) pairs."""
    for lineno, obj in _json_lines(lines, source):
        yield obj if isinstance(obj, Problem) else parse_arxiv_daily_record(obj, source, f"line {lineno}")
        yield Checkpoint(str(lineno))


def parse_acm_cr_record(obj: dict, source: str = "acm-cr", position: str = "") -> Paper | Problem:
    doi = normalize_doi(obj.get("doi"))
    title = latex_to_text(obj.get("title"))
    if not title:
        return Problem(source, position, f"{obj.get('doi')!r}: missing title")
    if not doi:
        return Problem(source, position, f"{title[:60]!r}: missing or malformed DOI {obj.get('doi')!r}")
    signals: dict = {}
    if obj.get("year"):
        signals["year"] = str(obj["year"])
    if obj.get("keywords"):
        signals["keywords"] = [k.strip() for k in str(obj["keywords"]).split(",") if k.strip()]
    return Paper(
        doi=doi, title=title, abstract=latex_to_text(obj.get("abstract")),
        authors=split_name_list(obj.get("authors")), journal_ref=clean_text(obj.get("venue")) or None,
        source=source, links={"doi": f"https://doi.org/{doi}"}, signals=signals,
    )


def parse_acm_cr(lines: Iterable[tuple[int, str | Problem]], source: str = "acm-cr") -> Iterator[Record]:
    for lineno, obj in _json_lines(lines, source):
        yield obj if isinstance(obj, Problem) else parse_acm_cr_record(obj, source, f"line {lineno}")
        yield Checkpoint(str(lineno))


def _open_lines(source: str, parse):
    def open_(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
        stream = open_binary(target)
        try:
            yield from parse(numbered_lines(stream, source, int(start or 0)), source)
        finally:
            stream.close()
    return open_


SAMPLE_FILE = "sample.jsonl.gz"


def open_sample(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    """The bundled sample: real arXiv papers cut from arxiv-daily (arXiv metadata is CC0)."""
    with resources.as_file(resources.files("papersift") / "data" / SAMPLE_FILE) as path:
        stream = open_binary(path)
        try:
            yield from parse_arxiv_daily(numbered_lines(stream, "sample", int(start or 0)), "sample")
        finally:
            stream.close()


SOURCES = [
    SourceSpec(
        name="arxiv-daily", help="arXiv papers as JSON lines (../shared/data/arxiv-daily format), .gz or plain",
        example="papersift ingest arxiv-daily ../shared/data/arxiv-daily/arxiv_papers.jsonl.gz",
        target_help="path to the .jsonl or .jsonl.gz file",
        open=_open_lines("arxiv-daily", parse_arxiv_daily),
        resume_key=lambda t, o: file_resume_key("arxiv-daily", t), parallel=True,
    ),
    SourceSpec(
        name="acm-cr", help="ACM-CR corpus papers as JSON lines (DOI-keyed)",
        example="papersift ingest acm-cr ../shared/data/acm-cr/corpus.jsonl.gz",
        target_help="path to corpus.jsonl(.gz)",
        open=_open_lines("acm-cr", parse_acm_cr),
        resume_key=lambda t, o: file_resume_key("acm-cr", t), parallel=True,
    ),
    SourceSpec(
        name="sample", help="the bundled sample of real recent arXiv papers (offline demo)",
        example="papersift ingest sample", target_help="no target needed",
        open=open_sample, target_required=False,
    ),
]
