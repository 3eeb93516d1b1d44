"""Text clean-up shared by the parsers: whitespace, LaTeX accents, BibTeX name lists, category codes,
dates in the formats sources use. Pure functions."""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import re

_ARXIV_CATEGORY = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")


def clean_text(text: str | None) -> str:
    """One line: runs of whitespace (arXiv's hard line breaks included) become one space."""
    return " ".join(text.split()) if text else ""


def latex_to_text(text: str | None) -> str:
    """`Bal\\'azs` → `Balázs`, `{\\o}` → `ø`, case-protecting braces dropped; math ($…$) is kept as is."""
    if not text:
        return ""
    if "\\" not in text and "{" not in text:
        return clean_text(text)
    try:
        converted = _latex_converter().latex_to_text(text)
    except Exception:  # pylatexenc gives up on some malformed input: keep the text rather than lose it
        converted = text.replace("{", "").replace("}", "")
    return clean_text(converted)


@functools.lru_cache(maxsize=1)
def _latex_converter():
    # building the converter costs ~150 µs, a quarter of a conversion: make it once
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=False)


def split_arxiv_categories(codes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(arXiv taxonomy codes in order, other class codes such as ACM `I.2.7` or MSC `68T45`)."""
    if isinstance(codes, str):
        codes = codes.split()
    arxiv, other = [], []
    for code in codes or ():
        code = code.strip()
        if not code:
            continue
        (arxiv if _ARXIV_CATEGORY.match(code) else other).append(code)
    return tuple(dict.fromkeys(arxiv)), tuple(dict.fromkeys(other))


def split_name_list(names: str | None) -> tuple[str, ...]:
    """A BibTeX author list (`Last, First and Last, First` or `First Last and …`) → `First Last` names.
    `and others` is dropped; LaTeX accents are converted."""
    if not names:
        return ()
    parts = re.split(r"\s+and\s+", clean_text(names), flags=re.IGNORECASE)
    out = []
    for part in parts:
        part = part.strip()
        if not part or part.lower() in ("others", "et al.", "et al"):
            continue
        part = latex_to_text(part)
        if "," in part:
            bits = [b.strip() for b in part.split(",")]
            last, first = bits[0], bits[-1]
            if len(bits) == 3:  # Last, Jr, First
                last, first = f"{bits[0]} {bits[1]}", bits[2]
            part = f"{first} {last}".strip()
        out.append(clean_text(part))
    return tuple(out)


def parse_date(text: str | None) -> dt.date | None:
    """A date from ISO (`2024-01-31`, `2024-01-31T12:00:00Z`), RFC 2822 (`Mon, 2 Apr 2007 19:18:42 GMT`)
    or a bare year-month (`2024-01`, first of the month). None for empty input; ValueError if unparseable."""
    if text is None:
        return None
    s = str(text).strip()
    if not s:
        return None
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", s)
    if m:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = re.match(r"^(\d{4})-(\d{2})$", s)
    if m:
        return dt.date(int(m.group(1)), int(m.group(2)), 1)
    try:
        return email.utils.parsedate_to_datetime(s).date()
    except (TypeError, ValueError):
        pass
    raise ValueError(f"unreadable date {s!r}")
