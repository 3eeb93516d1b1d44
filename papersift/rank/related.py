"""Related papers: for one paper, the papers closest to it in meaning (its stored embedding against
the vector index), joined by the papers its readers also saved or upvoted when there are such
readers, without itself or copies of itself (same title + first author under another id), each with
a reason naming what they share.

score = cosine + CO_WEIGHT · (readers who kept both / the most readers any candidate shares): on a
catalog with no readers yet it is the cosine order; as readers arrive, their co-saves lift papers
that meaning alone ranks lower. CO_WEIGHT was tuned on CiteULike-a (bench/related_quality.py).
"""

from __future__ import annotations

import numpy as np

from papersift.ids import title_key
from papersift.index.vectors import VectorIndex
from papersift.models import Hit, Paper
from papersift.store.base import Store

CO_WEIGHT = 0.25
EXTRA = 10  # candidates beyond k, to make up for copies of the paper that are dropped


def _reason(paper: Paper, other: Paper, similarity: float, readers: int) -> str:
    shared = [c for c in other.categories if c in paper.categories]
    authors = [a for a in other.authors if a in paper.authors]
    parts = [f"similar content ({similarity:.2f})"]
    if readers:
        parts.append(f"{readers} readers saved both")
    if authors:
        parts.append("shares author " + authors[0])
    elif shared:
        parts.append("also in " + shared[0])
    return ", ".join(parts)


def _candidates(store: Store, index: VectorIndex, model: str, dim: int, paper: Paper, vector: np.ndarray,
                k: int) -> tuple[dict[int, float], dict[int, int]]:
    """({id: cosine}, {id: readers shared}) for the dense neighbours and the co-saved papers."""
    ids, scores = index.search(vector, k + EXTRA)
    cosine = {int(i): float(s) for i, s in zip(np.asarray(ids).reshape(-1), np.asarray(scores).reshape(-1))}
    co = dict(store.co_interactions(paper.id, limit=k + EXTRA))
    for pid in co:
        if pid not in cosine:
            other = store.paper_embedding(model, pid, dim)
            cosine[pid] = float(other @ vector) if other is not None else 0.0
    cosine.pop(paper.id, None)
    co.pop(paper.id, None)
    return cosine, co


def related_papers(store: Store, index: VectorIndex, model: str, dim: int, ref: str | int | Paper,
                   k: int = 10) -> list[Hit]:
    """The `k` papers most related to `ref` (an arXiv id, DOI, catalog id, or the Paper), best first."""
    paper = ref if isinstance(ref, Paper) else store.get_paper(ref)
    vector = store.paper_embedding(model, paper.id, dim)
    if vector is None:
        return []
    cosine, co = _candidates(store, index, model, dim, paper, vector, k)
    top_co = max(co.values(), default=0)
    score = {pid: c + (CO_WEIGHT * co.get(pid, 0) / top_co if top_co else 0.0) for pid, c in cosine.items()}
    ranked = sorted(score, key=lambda pid: (-score[pid], pid))
    # the best k + 3 first: copies are rare, so the rest is fetched only when some were dropped
    by_id = {p.id: p for p in store.get_papers(ranked[:k + 3])}
    seen_keys = {title_key(paper.title, paper.authors[0] if paper.authors else "")}
    hits: list[Hit] = []
    for n, pid in enumerate(ranked):
        if n == k + 3:
            by_id.update((p.id, p) for p in store.get_papers(ranked[k + 3:]))
        other = by_id.get(pid)
        if other is None:
            continue
        key = title_key(other.title, other.authors[0] if other.authors else "")
        if key in seen_keys:  # another record of the same paper, or of one already listed
            continue
        seen_keys.add(key)
        hits.append(Hit(other.ref, score[pid], _reason(paper, other, cosine[pid], co.get(pid, 0)), other))
        if len(hits) == k:
            break
    return hits
