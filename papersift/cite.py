"""BibTeX for a paper (the "cite" box, library exports). Pure: Paper in, text out.

The entry is what arXiv's own "Export BibTeX citation" gives (@misc with eprint, archivePrefix and
primaryClass, as biblatex and natbib styles expect), or @article when a journal reference is known.
Text is escaped for LaTeX so that a title with `%`, `&` or `{` cannot break the reader's .bib file.
"""

from __future__ import annotations

import re
import unicodedata

from papersift.ids import last_name
from papersift.models import Paper

_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "&": r"\&", "$": r"\$",
            "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_SPECIAL_RE = re.compile(r"[\\{}%&$#_~^]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def latex_escape(text: str) -> str:
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], _CONTROL.sub(" ", text)).strip()


def _ascii_word(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]", "", folded)


def citekey(paper: Paper) -> str:
    """surname + year + first title word, as Google Scholar makes them: `vaswani2017attention`."""
    surname = _ascii_word(last_name(paper.authors[0])).lower() if paper.authors else "anon"
    day = paper.submitted or paper.listed or paper.updated
    year = str(day.year) if day else ""
    words = [w for w in (_ascii_word(w).lower() for w in paper.title.split()) if len(w) > 3]
    return f"{surname or 'anon'}{year}{words[0] if words else ''}"


def bibtex(paper: Paper) -> str:
    day = paper.submitted or paper.listed or paper.updated
    fields: list[tuple[str, str]] = [
        ("title", "{" + latex_escape(paper.title) + "}"),
        ("author", " and ".join(latex_escape(a) for a in paper.authors) or "Anonymous"),
    ]
    if day:
        fields.append(("year", str(day.year)))
    kind = "misc"
    if paper.journal_ref:
        kind = "article"
        fields.append(("journal", latex_escape(paper.journal_ref)))
    if paper.arxiv_id:
        fields += [("eprint", paper.arxiv_id), ("archivePrefix", "arXiv")]
        if paper.primary_category:
            fields.append(("primaryClass", latex_escape(paper.primary_category)))
    if paper.doi:
        fields.append(("doi", latex_escape(paper.doi)))
    url = paper.abs_url or (f"https://doi.org/{paper.doi}" if paper.doi else None)
    if url:
        fields.append(("url", latex_escape(url)))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{citekey(paper)},\n{body}\n}}\n"


def bibtex_library(papers: list[Paper]) -> str:
    """Several entries; citekeys made unique with a, b, c … as BibTeX managers do."""
    seen: dict[str, int] = {}
    out = []
    for paper in papers:
        entry = bibtex(paper)
        key = citekey(paper)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n:
            suffix = chr(ord("a") + n - 1) if n <= 26 else str(n)
            entry = entry.replace("{" + key + ",", "{" + key + suffix + ",", 1)
        out.append(entry)
    return "\n".join(out)
