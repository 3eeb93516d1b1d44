"""Related papers: for one paper, the papers closest to it in meaning (its stored embedding against
the vector index), without itself or copies of itself (same title + first author under another id),
each with a reason naming what they share."""

from __future__ import annotations

import numpy as np

from papersift.ids import title_key
from papersift.index.vectors import VectorIndex
from papersift.models import Hit, Paper
from papersift.store.base import Store


def _reason(paper: Paper, other: Paper, similarity: float) -> str:
    shared = [c for c in other.categories if c in paper.categories]
    authors = [a for a in other.authors if a in paper.authors]
    parts = [f"similar content ({similarity:.2f})"]
    if authors:
        parts.append("shares author " + authors[0])
    elif shared:
        parts.append("also in " + shared[0])
    return ", ".join(parts)


def related_papers(store: Store, index: VectorIndex, model: str, dim: int, ref: str | int,
                   k: int = 10) -> list[Hit]:
    """The `k` papers most related to `ref` (an arXiv id, DOI or catalog id), best first."""
    paper = store.get_paper(ref)
    vector = store.paper_embedding(model, paper.id, dim)
    if vector is None:
        return []
    ids, scores = index.search(vector, k + 10)
    ids, scores = np.asarray(ids).reshape(-1), np.asarray(scores).reshape(-1)
    candidates = [int(i) for i in ids if int(i) != paper.id]
    by_id = {p.id: p for p in store.get_papers(candidates)}
    own_key = title_key(paper.title, paper.authors[0] if paper.authors else "")
    seen_keys = {own_key}
    hits: list[Hit] = []
    for pid, score in zip(ids.tolist(), scores.tolist()):
        other = by_id.get(pid)
        if other is None:
            continue
        key = title_key(other.title, other.authors[0] if other.authors else "")
        if key in seen_keys:  # another record of the same paper, or of one already listed
            continue
        seen_keys.add(key)
        hits.append(Hit(other.ref, float(score), _reason(paper, other, float(score))))
        if len(hits) == k:
            break
    return hits
