"""Plain frozen dataclasses shared by every stage. No I/O here.

A `Paper` is what a parser produces and what the catalog stores: one paper, whatever the source.
A `Problem` is what a parser produces instead when a record is malformed: it says where and why,
so the ingest runner can report it, count it and carry on with the rest of the batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from papersift.ids import title_key


@dataclass(frozen=True)
class Paper:
    """One paper. `arxiv_id` has no version; `version` is the latest version seen (1 for v1).

    Dates: `submitted` is the v1 submission date, `updated` the date of the latest version,
    `listed` the day arXiv (or another feed) first announced it. Categories: primary first.
    `signals` holds per-source extras (Hugging Face upvotes, github repo, keywords …);
    `raw` the source's own record as JSON text, for sources whose fields keep changing.
    """

    title: str
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    abstract: str = ""
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    submitted: dt.date | None = None
    updated: dt.date | None = None
    listed: dt.date | None = None
    source: str = ""
    links: Mapping[str, str] = field(default_factory=dict)
    comment: str | None = None
    journal_ref: str | None = None
    withdrawn: bool = False
    signals: Mapping[str, Any] = field(default_factory=dict)
    raw: str | None = None
    id: int | None = None  # the catalog's row id; None until stored

    @property
    def key(self) -> str:
        """The identity the catalog deduplicates on: arXiv id, then DOI, then title + first author."""
        if self.arxiv_id:
            return "arxiv:" + self.arxiv_id
        if self.doi:
            return "doi:" + self.doi
        return "title:" + title_key(self.title, self.authors[0] if self.authors else "")

    @property
    def ref(self) -> str:
        """The public id used in URLs and the API: the arXiv id, else `doi:<doi>`, else `#<row id>`."""
        if self.arxiv_id:
            return self.arxiv_id
        if self.doi:
            return "doi:" + self.doi
        return f"#{self.id}"

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    @property
    def abs_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else self.links.get("abs")

    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else self.links.get("pdf")


@dataclass(frozen=True)
class Problem:
    """A record that could not be used: where it was (`source`, `position`) and why."""

    source: str
    position: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.position}: {self.reason}"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str | None = None
    created: dt.datetime | None = None


INTERACTION_KINDS = ("upvote", "save", "view", "dismiss")


@dataclass(frozen=True)
class Interaction:
    user_id: int
    paper_key: str
    kind: str
    at: dt.datetime


@dataclass(frozen=True)
class Hit:
    """One ranked result; every ranker returns a list of these, best first. `paper` is the paper itself
    when the ranker had it at hand (callers then need not look it up again); it takes no part in
    equality or repr."""

    paper_id: str
    score: float
    reason: str = ""
    paper: Paper | None = field(default=None, compare=False, repr=False)
