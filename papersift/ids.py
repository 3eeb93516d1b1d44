"""Identifier normalization: arXiv ids, DOIs and the title+first-author fallback key. Pure functions.

arXiv ids come as `2301.00001`, `2301.00001v2`, `arXiv:2301.00001`, `0704.0001`, `hep-th/9901001`,
`math.GT/0309136v1` (an old id with its subject class), or inside an abs/pdf/html URL. We keep
the id without its version and return the version separately. Old-style ids drop the subject class
(`math.GT/0309136` is `math/0309136` on arXiv itself).
"""

from __future__ import annotations

import re
import unicodedata

_NEW = r"(?P<new>\d{4}\.\d{4,5})"
_OLD = r"(?P<arch>[a-z][a-z-]*)(?:\.[A-Z]{2})?/(?P<num>\d{7})"
_VERSION = r"(?:v(?P<v>\d+))?"
_ARXIV_RE = re.compile(rf"^(?:{_NEW}|{_OLD}){_VERSION}$")
_URL_RE = re.compile(
    r"^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html|format)/(?P<rest>.+?)(?:\.pdf)?/?(?:[?#].*)?$",
    re.IGNORECASE,
)
_ARXIV_DOI_RE = re.compile(r"^10\.48550/arxiv\.(?P<rest>.+)$", re.IGNORECASE)
_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")


def parse_arxiv_id(text: str | None) -> tuple[str, int | None] | None:
    """Return (id without version, version or None) for anything that names an arXiv paper, else None."""
    if not text:
        return None
    s = text.strip()
    m = _URL_RE.match(s)
    if m:
        s = m.group("rest")
    s = re.sub(r"^arxiv:\s*", "", s, flags=re.IGNORECASE)
    m = _ARXIV_DOI_RE.match(s)
    if m:
        s = m.group("rest")
    m = _ARXIV_RE.match(s)
    if not m:
        return None
    version = int(m.group("v")) if m.group("v") else None
    if m.group("new"):
        yymm, number = m.group("new").split(".")
        # four-digit numbers until 1412, five from 1501 on: "2401.0001" is not an id
        if len(number) != (5 if yymm >= "1501" else 4) or not "01" <= yymm[2:] <= "12":
            return None
        return m.group("new"), version
    return f"{m.group('arch')}/{m.group('num')}", version


def normalize_arxiv_id(text: str | None) -> str | None:
    """The versionless arXiv id in `text`, or None if `text` names no arXiv paper."""
    parsed = parse_arxiv_id(text)
    return parsed[0] if parsed else None


def normalize_doi(text: str | None) -> str | None:
    """A DOI in lower case without resolver prefixes (`doi:`, `https://doi.org/`), or None."""
    if not text:
        return None
    s = text.strip()
    s = re.sub(r"^(?:https?://)?(?:dx\.)?doi\.org/", "", s, flags=re.IGNORECASE)
    s = re.sub(r"^doi:\s*", "", s, flags=re.IGNORECASE)
    s = s.strip().rstrip(".").lower()
    return s if _DOI_RE.match(s) else None


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower case ASCII letters and digits only: accents, TeX braces and punctuation dropped."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALNUM.sub("", text.lower())


def last_name(author: str) -> str:
    """The family name of `Given Family` or `Family, Given`, folded."""
    author = author.strip()
    if "," in author:
        return fold(author.split(",", 1)[0])
    parts = author.split()
    return fold(parts[-1]) if parts else ""


def title_key(title: str, first_author: str = "") -> str:
    """The fallback identity for papers with neither arXiv id nor DOI."""
    return f"{fold(title)}|{last_name(first_author)}"


def looks_like_identifier(query: str) -> bool:
    """True when a search query is an arXiv id/URL or a DOI (the search finds that paper first)."""
    return parse_arxiv_id(query) is not None or normalize_doi(query) is not None
