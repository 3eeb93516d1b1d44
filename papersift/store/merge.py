"""How two records of one paper become one: pure, shared by every Store backend.

The newer record wins field by field where it has a value; the older fills the gaps. "Newer" means a
higher version, then a later `updated` date; at a tie the incoming record wins (a re-ingest of the same
record changes nothing). The v1 submission date and the first listing date are the earliest seen,
signals and links are merged key by key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.models import Paper

_EARLIEST = ("submitted", "listed")
_MERGED_DICTS = ("signals", "links")
_MIN = dt.date.min


def _is_newer(incoming: Paper, existing: Paper) -> bool:
    return (incoming.version or 0, incoming.updated or _MIN) >= (existing.version or 0, existing.updated or _MIN)


def _empty(value) -> bool:
    return value is None or value == "" or value == () or value == {}


def merge_papers(existing: Paper, incoming: Paper) -> Paper:
    """The one record that the catalog keeps for `existing` after `incoming` arrives."""
    new, old = (incoming, existing) if _is_newer(incoming, existing) else (existing, incoming)
    values = {}
    for f in dataclasses.fields(Paper):
        name = f.name
        a, b = getattr(new, name), getattr(old, name)
        if name == "id":
            values[name] = existing.id
        elif name in _EARLIEST:
            present = [d for d in (a, b) if d is not None]
            values[name] = min(present) if present else None
        elif name in _MERGED_DICTS:
            values[name] = {**(b or {}), **(a or {})}
        elif name == "version":
            values[name] = max((v for v in (a, b) if v is not None), default=None)
        else:
            values[name] = b if _empty(a) else a
    return Paper(**values)


def same_content(a: Paper, b: Paper) -> bool:
    """True when storing `b` over `a` would change nothing (row ids aside)."""
    return dataclasses.replace(a, id=None) == dataclasses.replace(b, id=None)


_CANONICAL_ID = re.compile(r"\d{4}\.\d{4,5}")
_CANONICAL_DOI = re.compile(r"10\.\d{4,9}/[^\sA-Z]+")


def normalize_identifiers(paper: Paper) -> Paper:
    """The paper with its arXiv id versionless (the version moved to `version`) and its DOI normalized."""
    arxiv_id, version, doi = paper.arxiv_id, paper.version, paper.doi
    # parsers hand over canonical ids already: a cheap check spares the full parse on the bulk path
    if (arxiv_id is None or _CANONICAL_ID.fullmatch(arxiv_id)) and (doi is None or _CANONICAL_DOI.fullmatch(doi)):
        return paper
    if arxiv_id:
        parsed = parse_arxiv_id(arxiv_id)
        if parsed:
            arxiv_id = parsed[0]
            version = max(v for v in (version, parsed[1], 0) if v is not None) or version
    if doi:
        doi = normalize_doi(doi) or doi.strip().lower()
    if (arxiv_id, version, doi) == (paper.arxiv_id, paper.version, paper.doi):
        return paper
    return dataclasses.replace(paper, arxiv_id=arxiv_id, version=version, doi=doi)
