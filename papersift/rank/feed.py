"""A reader's "For you" feed: recent papers ranked by what the reader has kept, with reasons.

  * The signal (`reader_signal`): saves, upvotes and papers in collections count 1, views 0.3, each
    halving every HALF_LIFE_DAYS; dismissals ("not interested") push a paper and its near-duplicates
    down. Signal from before "reset my recommendations" is ignored. A feed can be seeded from one
    collection (then only its papers count), and "more like this" seeds it from one paper.
  * Candidates: papers listed in the FEED_DAYS days up to the catalog's latest day, not already in
    the reader's library, not dismissed, not muted (keyword in title or abstract, author, category).
  * Content score (works from the first saved paper, and for papers nobody has touched yet): the
    weighted mean of each candidate's best cosine similarities to the reader's papers (its best one
    for a library under 8 papers, the TOP_K best from 12 on), minus
    DISMISS_WEIGHT times its best similarity to a dismissed paper. Where a recommendation model is
    fitted (rank/personal.py, from every reader's library: collaborative where readers overlap, from
    content for new papers) and the reader has papers in it, its scores rank the feed instead.
  * Diversity: maximal marginal relevance over the top of the list (MMR_LAMBDA), so a feed is not ten
    versions of one idea.
  * A reader with no signal yet gets trending papers in the categories they chose (or all), marked cold.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from papersift.index.build import model_key
from papersift.models import Hit, Paper, User
from papersift.rank import trending as trending_mod
from papersift.store.base import Store

FEED_DAYS = 30
HALF_LIFE_DAYS = 180.0
WEIGHTS = {"save": 1.0, "upvote": 1.0, "collection": 1.0, "view": 0.3}
TOP_K = 3
DISMISS_WEIGHT = 0.5
MMR_LAMBDA = 0.75
MMR_DEPTH = 100
CANDIDATE_TTL = 300.0

@dataclass
class Signal:
    positives: dict[int, float] = field(default_factory=dict)  # paper id → weight
    dismissed: set[int] = field(default_factory=set)
    basis: str = "your library"

    def __bool__(self) -> bool:
        return bool(self.positives)


@dataclass
class FeedPage:
    hits: list[Hit]
    cold: bool
    basis: str
    has_next: bool = False


def reader_signal(store: Store, user: User, *, seed: Paper | None = None, now: dt.datetime | None = None) -> Signal:
    now = now or dt.datetime.now(dt.timezone.utc)
    settings = store.feed_settings(user.id)
    reset = settings["reset_at"]
    signal = Signal()
    seed_collection = settings["seed_collection"]

    def add(pid: int, weight: float, at: str | None) -> None:
        if at is not None:
            when = dt.datetime.fromisoformat(at)
            if reset is not None and when <= reset:  # times are to the second: a tie is before the reset
                return
            weight *= 0.5 ** (max((now - when).total_seconds(), 0) / 86400 / HALF_LIFE_DAYS)
        signal.positives[pid] = max(signal.positives.get(pid, 0.0), weight)

    for _, pid, kind, at in store.interactions(user.id):
        if kind == "dismiss":
            if reset is None or dt.datetime.fromisoformat(at) > reset:
                signal.dismissed.add(pid)
        elif seed_collection is None:
            add(pid, WEIGHTS[kind], at)
    if seed_collection is not None:
        name = next((c["name"] for c in store.collections(user.id) if c["id"] == seed_collection), "a collection")
        signal.basis = f"your collection “{name}”"
        for p in store.collection_papers(user.id, seed_collection):
            add(p.id, WEIGHTS["collection"], None)
    else:
        for c in store.collections(user.id):
            for p in store.collection_papers(user.id, c["id"]):
                add(p.id, WEIGHTS["collection"], None)
    signal.dismissed -= set(signal.positives)
    if seed is not None:  # "more like this": the paper leads, the library still shapes the rest
        signal.positives = {pid: w * 0.25 for pid, w in signal.positives.items()}
        signal.positives[seed.id] = 1.0
        signal.basis = f"“{seed.title}”"
    return signal


def _muted(paper: Paper, mutes: dict[str, list[str]]) -> bool:
    if any(c in mutes["category"] for c in paper.categories):
        return True
    authors = {a.lower() for a in paper.authors}
    if any(a.lower() in authors for a in mutes["author"]):
        return True
    text = f"{paper.title} {paper.abstract}".lower()
    return any(k.lower() in text for k in mutes["keyword"])


def content_scores(cand: np.ndarray, pos: np.ndarray, weights: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Weighted mean of each candidate's TOP_K best cosines to the positives, minus the dismissal penalty."""
    sims = cand @ pos.T * weights[None, :]
    # a small library is several interests, not one: a paper close to any one of its papers counts;
    # from a dozen papers on, the best TOP_K (a measured profile: ../shared/measured.md) smooth out noise
    k = max(1, min(TOP_K, sims.shape[1] // 4))
    top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    scores = top.mean(axis=1)
    if len(neg):
        scores -= DISMISS_WEIGHT * np.clip((cand @ neg.T).max(axis=1), 0, None)
    return scores


def mmr(order: np.ndarray, scores: np.ndarray, vectors: np.ndarray, depth: int = MMR_DEPTH,
        lam: float = MMR_LAMBDA) -> np.ndarray:
    """Re-rank the first `depth` of `order` by λ·score − (1−λ)·(max similarity to those already picked)."""
    head, tail = order[:depth], order[depth:]
    if len(head) < 3:
        return order
    rel = scores[head]
    rel = (rel - rel.min()) / max(float(rel.max() - rel.min()), 1e-9)
    sim = vectors[head] @ vectors[head].T
    picked = [int(np.argmax(rel))]
    closest = sim[picked[0]].copy()
    left = np.ones(len(head), bool)
    left[picked[0]] = False
    while left.any():
        value = np.where(left, lam * rel - (1 - lam) * closest, -np.inf)
        nxt = int(np.argmax(value))
        picked.append(nxt)
        left[nxt] = False
        closest = np.maximum(closest, sim[nxt])
    return np.concatenate([head[picked], tail])


class FeedService:
    """Feeds over one catalog and the searchable embedding tier (`rank/service.Discovery`)."""

    def __init__(self, store: Store, discovery, days: int = FEED_DAYS):
        self.store, self.discovery, self.days = store, discovery, days
        self._lock = threading.Lock()
        self._cache: tuple | None = None  # (key, time, ids, vectors, papers by id)
        self._personal: tuple | None = None  # (stamp, PersonalModel | None)

    def personal(self, ids: np.ndarray, vectors: np.ndarray):
        """The fitted recommendation model (rank/personal.py) with these candidates in it, or None; reloaded
        when `papersift update` saves a new one."""
        from papersift.rank.personal import PersonalModel, model_folder

        model = self._model()
        if model is None:
            return None
        manifest = model_folder(self.discovery.data_dir) / "catalog.json"
        stamp = (manifest.stat().st_mtime if manifest.exists() else None, model[0])
        with self._lock:
            if self._personal is None or self._personal[0] != stamp:
                self._personal = (stamp, PersonalModel.load(self.discovery.data_dir, model[0]) if stamp[0] else None)
            loaded = self._personal[1]
        if loaded is not None and len(ids):
            loaded.include(ids, vectors)  # new candidates join as cold items; known ones cost a lookup
        return loaded

    def _model(self) -> tuple[str, int] | None:
        d = self.discovery
        if not d.has_vectors or d.embedder is None:
            return None
        return model_key(d.embedder), d.embedder.dim

    def _candidates(self):
        """Recent papers and their vectors, kept for CANDIDATE_TTL seconds (a few MB at 75k papers)."""
        model = self._model()
        last = trending_mod.latest_day(self.store)
        key = (model, last)
        with self._lock:
            if self._cache and self._cache[0] == key and time.monotonic() - self._cache[1] < CANDIDATE_TTL:
                return self._cache[2:]
        papers: dict[int, Paper] = {}
        if last is not None:
            offset = 0
            while True:
                page = self.store.papers_listed(last - dt.timedelta(days=self.days - 1), last, limit=5000, offset=offset)
                papers.update((p.id, p) for p in page)
                if len(page) < 5000:
                    break
                offset += 5000
        ids, vectors = (self.store.paper_embeddings(model[0], list(papers), model[1]) if model and papers
                        else (np.zeros(0, np.int64), np.zeros((0, 1), np.float32)))
        with self._lock:
            self._cache = (key, time.monotonic(), ids, vectors, papers)
        return ids, vectors, papers

    def feed(self, user: User, *, limit: int = 20, offset: int = 0, seed: str | None = None,
             now: dt.datetime | None = None) -> FeedPage:
        seed_paper = self.store.get_paper(seed) if seed else None
        signal = reader_signal(self.store, user, seed=seed_paper, now=now)
        model = self._model()
        if not signal or model is None:
            return self._cold(user, limit, offset, signal)
        all_ids, all_vectors, papers = self._candidates()
        mutes = self.store.mutes(user.id)
        keep = np.array([int(i) not in signal.positives and int(i) not in signal.dismissed
                         and not _muted(papers[int(i)], mutes) for i in all_ids], bool)
        ids, vectors = all_ids[keep], all_vectors[keep]
        pos_ids, pos_vectors = self.store.paper_embeddings(model[0], list(signal.positives), model[1])
        if not len(ids) or not len(pos_ids):
            return self._cold(user, limit, offset, signal)
        personal = self.personal(all_ids, all_vectors)
        scores = personal.scores(signal.positives, signal.dismissed, ids) if personal is not None else None
        if scores is None:  # no fitted model, or none of the reader's papers in it: content alone
            weights = np.array([signal.positives[int(i)] for i in pos_ids], np.float32)
            neg = self.store.paper_embeddings(model[0], list(signal.dismissed), model[1])[1] if signal.dismissed \
                else np.zeros((0, model[1]), np.float32)
            scores = content_scores(vectors, pos_vectors, weights, neg)
        order = mmr(np.argsort(-scores, kind="stable"), scores, vectors)
        page = order[offset:offset + limit]
        closest = np.argmax(vectors[page] @ pos_vectors.T, axis=1) if len(page) else []
        titles = {p.id: p.title for p in self.store.get_papers([int(pos_ids[j]) for j in closest])}
        hits = [Hit(papers[int(ids[i])].ref, float(scores[i]), _reason(titles.get(int(pos_ids[j]), "")), papers[int(ids[i])])
                for i, j in zip(page, closest)]
        return FeedPage(hits, False, signal.basis, offset + limit < len(order))

    def _cold(self, user: User, limit: int, offset: int, signal: Signal) -> FeedPage:
        """No signal yet: what is trending this week in the reader's chosen categories."""
        cats = self.store.feed_settings(user.id)["categories"] or [None]
        seen: dict[str, Hit] = {}
        for cat in cats:
            for h in trending_mod.trending(self.store, "week", None, category=cat, limit=offset + limit + 1):
                seen.setdefault(h.paper_id, h)
        hits = sorted(seen.values(), key=lambda h: -h.score)
        basis = ", ".join(c for c in cats if c) or "all categories"
        return FeedPage(hits[offset:offset + limit], True, f"trending in {basis}", len(hits) > offset + limit)

    def why(self, user: User, ref: str, n: int = 3) -> dict:
        """The evidence behind a paper in the reader's feed: the reader's papers it is closest to and the
        words it shares with them, rarest first."""
        paper = self.store.get_paper(ref)
        signal = reader_signal(self.store, user)
        model = self._model()
        closest: list[tuple[Paper, float]] = []
        if model and signal:
            vec = self.store.paper_embedding(model[0], paper.id, model[1])
            pos_ids, pos_vectors = self.store.paper_embeddings(model[0], list(signal.positives), model[1])
            if vec is not None and len(pos_ids):
                sims = pos_vectors @ vec
                top = np.argsort(-sims)[:n]
                by_id = {p.id: p for p in self.store.get_papers([int(pos_ids[i]) for i in top])}
                closest = [(by_id[int(pos_ids[i])], float(sims[i])) for i in top if int(pos_ids[i]) in by_id]
        terms = _shared_terms(self.discovery, paper, [p for p, _ in closest])
        return {"paper": paper, "closest": closest, "terms": terms, "basis": signal.basis,
                "mutes": self.store.mutes(user.id)}


def _reason(title: str) -> str:
    if not title:
        return "close to your library"
    short = title if len(title) <= 70 else title[:67].rsplit(" ", 1)[0] + "…"
    return f"because you kept “{short}”"


def _shared_terms(discovery, paper: Paper, library: list[Paper], n: int = 8) -> list[str]:
    """Words of `paper` that also occur in the reader's closest papers, rarest in the catalog first."""
    bm25 = getattr(discovery.searcher, "bm25", None)
    if bm25 is None or not library:
        return []
    analyzer = bm25.analyzer
    words = analyzer.words(f"{paper.title} {paper.abstract}")
    stems = analyzer.stems(words)
    surface: dict[str, str] = {}
    for w, s in zip(words, stems):
        if s is not None and len(w) > 2 and not w.isdigit():
            surface.setdefault(s, w)
    theirs = set(analyzer.terms(" ".join(f"{p.title} {p.abstract}" for p in library)))
    shared = [s for s in surface if s in theirs]
    df = bm25.document_frequency(shared)
    shared.sort(key=lambda s: (df.get(s, 0), s))
    return [surface[s] for s in shared if df.get(s, 0) > 0][:n]
