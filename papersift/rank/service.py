"""Discovery: search and related papers over one catalog and its indexes, as the CLI and the website
ask for them. It picks the searchable embedding tier (index/build.py: the configured model's index,
or the fast tier's while the full one is being built) and, in a long-running server, notices when
`papersift index` has replaced an index on disk and reloads it in the background (checked at most every
RELOAD_CHECK s): no request waits for an index to be read.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path

from papersift.index.build import FAST_TIER, index_folder, lexical_folder, model_key, searchable_lexical, searchable_tier
from papersift.index.embed import Embedder, create_embedder
from papersift.models import Hit, Paper
from papersift.rank.related import related_papers
from papersift.rank.search import Searcher, SearchPage
from papersift.rank.trending import content_prior
from papersift.store.base import Store
from papersift.store.fulltext import Filters

log = logging.getLogger(__name__)

RELOAD_CHECK = 1.0  # seconds between looks at the index files
RELATED_TTL = 600.0  # seconds a paper's related list is reused: it changes only with the index or co-saves
RELATED_CACHE = 20_000  # papers whose related lists are kept (~2 KB each)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Discovery:
    def __init__(self, store: Store, data_dir: str | Path, embedder: str = "minilm", api_key: str | None = None):
        self.store = store
        self.data_dir = Path(data_dir)
        models = self.data_dir / "models"
        self.embedders: list[Embedder] = [create_embedder(embedder, models, api_key=api_key)]
        if embedder.strip().lower() != FAST_TIER:
            self.embedders.append(create_embedder(FAST_TIER, models))
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple = ()
        self._loading: threading.Thread | None = None
        self.searcher = Searcher(store)
        self.embedder: Embedder | None = None
        self.index = None
        self._related: dict[tuple[int, int], tuple[float, list[Hit]]] = {}
        self.reload()

    def _files_stamp(self) -> tuple[float, tuple]:
        """What changes when `papersift index` rewrites an index: CURRENT of the BM25 index, and each
        vector index folder (written by rename, so the folder's own time moves)."""
        vectors: list[float] = []
        for e in self.embedders:
            folder = index_folder(self.data_dir, e)
            vectors += [_mtime(folder), *(_mtime(p) for p in (folder.iterdir() if folder.is_dir() else ()))]
        return _mtime(lexical_folder(self.data_dir) / "CURRENT"), tuple(vectors)

    def reload(self, only_changed: bool = False) -> None:
        """Open the indexes again; with `only_changed`, the vector indexes only if their files changed
        since the last reload (`papersift index` writes the BM25 index first, so a day's new papers are
        found by keyword while they are being embedded, and a vector index that has not changed is not
        read again: ~1 s at 75k vectors, ~17 s at a million)."""
        stamp = self._files_stamp()
        if not (only_changed and self._stamp and stamp[1] == self._stamp[1]):
            embedder, index = searchable_tier(self.store, self.data_dir, self.embedders)
        else:
            embedder, index = self.embedder, self.index
        bm25 = searchable_lexical(self.store, self.data_dir)
        # one assignment: a request in flight keeps the Searcher it started with
        self.embedder, self.index = embedder, index
        self.searcher = Searcher(self.store, embedder if index is not None else None, index, bm25=bm25)
        self._stamp, self._checked = stamp, time.monotonic()
        self._related = {}

    def refresh(self, wait: bool = False) -> None:
        """Reload what changed on disk since the last look (a few stat calls, at most every RELOAD_CHECK
        s), on a thread of its own: requests go on with the indexes they have until the new ones are
        read, instead of one of them waiting for it. `wait`: look now, and return once it is done."""
        if not wait and time.monotonic() - self._checked < RELOAD_CHECK:
            return
        with self._lock:
            loading = self._loading if self._loading is not None and self._loading.is_alive() else None
            if loading is None and (wait or time.monotonic() - self._checked >= RELOAD_CHECK):
                self._checked = time.monotonic()
                stamp = self._files_stamp()
                if stamp != self._stamp:
                    loading = self._loading = threading.Thread(
                        target=self._reload_logged, args=(stamp,), name="papersift-reload", daemon=True)
                    loading.start()
        if wait and loading is not None:
            loading.join()

    def _reload_logged(self, stamp: tuple) -> None:
        try:
            self.reload(only_changed=True)
        except Exception:  # a server keeps searching with what it has, and says why it could not reload
            log.exception("could not reload the indexes in %s; searching with the ones loaded before", self.data_dir)
            self._stamp = stamp  # tried once: again when the files change again

    @property
    def has_vectors(self) -> bool:
        return self.index is not None and len(self.index) > 0

    def content_prior(self):
        """The trending ranker's content prior over this catalog's vectors (None without vectors)."""
        if not self.has_vectors or self.embedder is None:
            return None
        return functools.partial(content_prior, self.store, model_key(self.embedder), self.embedder.dim)

    def search_page(self, query: str, *, limit: int = 20, offset: int = 0, filters: Filters | None = None) -> SearchPage:
        self.refresh()
        return self.searcher.search_page(query, limit=limit, offset=offset, filters=filters)

    def related(self, ref: str | int | Paper, k: int = 10) -> list[Hit]:
        """Related papers from the vector index; for a paper not embedded yet (ingested since the last
        `papersift index`), the papers that match its title and abstract best. A paper page asks for
        these on every view, so lists are kept for RELATED_TTL seconds (and dropped on reload)."""
        self.refresh()
        paper = ref if isinstance(ref, Paper) else self.store.get_paper(ref)
        key, now = (paper.id, k), time.monotonic()
        cached = self._related.get(key)
        if cached is not None and now - cached[0] < RELATED_TTL:
            return cached[1]
        hits = self._related_now(paper, k)
        if len(self._related) >= RELATED_CACHE:
            self._related = {}
        self._related[key] = (now, hits)
        return hits

    def _related_now(self, paper, k: int) -> list[Hit]:
        searcher = self.searcher  # one snapshot: a reload may swap the indexes meanwhile
        index, embedder = searcher.index, searcher.embedder
        if index is not None and len(index) and embedder is not None:
            hits = related_papers(self.store, index, model_key(embedder), embedder.dim, paper, k=k)
            if hits:
                return hits
        page = searcher.search_page(f"{paper.title} {paper.abstract}"[:1000], limit=k + 1)
        return [Hit(h.paper_id, h.score, "shares words with this paper", h.paper) for h in page.hits
                if h.paper_id != paper.ref][:k]
