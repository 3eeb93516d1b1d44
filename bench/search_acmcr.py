"""Search quality on ACM-CR citation contexts (protocol 2 of ../shared/data/README.md), every system in one run.

    .venv/bin/python bench/search_acmcr.py [--embedder minilm] [--limit-docs N] [--workdir DIR]
                                           [--out bench/results/search_acmcr.json]

Queries: the <desc> (citation-context paragraph) of each topic in contexts.topics that has at least one
relevant paper in the index; index: the corpus minus blacklist.txt (the 50 citing papers), year ≤ 2020
(records without a year are kept: nothing in the corpus is later than 2020); relevant: contexts.qrels.
Systems: BM25 (papersift's in-memory index, Searcher.lexical), TF-IDF cosine (1–2-grams, sublinear tf:
arxiv-sanity-lite's method; scikit-learn, bench only), dense (papersift's embedder, Searcher.dense),
RRF(BM25, dense) with k = 60, and papersift's default (Searcher.search). Recall@10, nDCG@10, MRR (of the
top 100) and Recall@100, with 95 % bootstrap CIs, and a paired bootstrap of the default against the best
baseline on each metric.

The corpus is indexed with papersift's own code (open_store, upsert_papers, build_index) into a work
folder that later runs reuse (build_index embeds only what is missing): bench/results/work/acmcr/, or
acmcr-limit<N>/ with --limit-docs N (a seeded subset that keeps every paper relevant to protocols 2 and 3).
Embedding the full corpus takes 30–60+ minutes on 2 cores (one embedder thread); bench/related_quality.py
(protocol 3) reuses the same folder. 2,269 records have neither title nor abstract: they are indexed with
their DOI as title (findable by no system; 7 are relevant). The JSON records the load average around the run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACMCR = ROOT.parent / "shared" / "data" / "acm-cr"
TOPICS = ACMCR / "topics+qrels"
WORK = ROOT / "bench" / "results" / "work"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics import per_query, print_table, summary, timed, versus_best, write_result  # noqa: E402

from papersift.ids import normalize_doi  # noqa: E402
from papersift.index.build import build_index, index_folder, lexical_folder, model_key  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank.search import FusionParams, Ranked, Searcher, fused_scores  # noqa: E402
from papersift.store import open_store  # noqa: E402

DEPTH = 100
RRF = FusionParams(method="rrf", lexical_weight=1.0, dense_weight=1.0, k=60)
BASELINES = ("bm25", "tfidf", "dense", "rrf")
SEARCH_METRICS = ("recall@10", "ndcg@10", "mrr", "recall@100")


# -- data ------------------------------------------------------------------------------------------

@dataclass
class Doc:
    title: str
    abstract: str
    authors: tuple[str, ...]
    year: int | None

    @property
    def text(self) -> str:  # what the TF-IDF baseline sees (the same as papersift's paper_text)
        return f"{self.title}. {self.abstract}" if self.abstract else self.title


@dataclass
class Citing:
    doi: str
    title: str
    abstract: str
    references: set[str]  # cited DOIs without a '-' mark (not yet cut to the index)


def load_corpus() -> dict[str, Doc]:
    """Every corpus record of year ≤ 2020 (or no year), by normalised DOI."""
    docs: dict[str, Doc] = {}
    with gzip.open(ACMCR / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            year = int(r["year"]) if str(r.get("year") or "").isdigit() else None
            if year is not None and year > 2020:
                continue
            authors = tuple(a.strip() for a in (r.get("authors") or "").split(" and ") if a.strip())
            docs[normalize_doi(r["doi"])] = Doc(r["title"].strip(), (r["abstract"] or "").strip(), authors, year)
    return docs


def load_blacklist() -> set[str]:
    return {normalize_doi(d) for d in (TOPICS / "blacklist.txt").read_text().split()}


def load_contexts(index: set[str]) -> list[tuple[str, str, set[str]]]:
    """(topic id, <desc> text, relevant DOIs in the index) of every topic with at least one."""
    qrels: dict[str, set[str]] = {}
    for line in (TOPICS / "contexts.qrels").read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and int(parts[3]) > 0:
            qrels.setdefault(parts[0], set()).add(normalize_doi(parts[2]))
    out = []
    for block in re.findall(r"<top>(.*?)</top>", (TOPICS / "contexts.topics").read_text(encoding="utf-8"), re.S):
        num = re.search(r"<num>\s*Number:\s*(\S+)", block).group(1)
        desc = re.search(r"<desc>\s*Description:\s*(.*?)\s*(?:<narr>|$)", block, re.S).group(1)
        relevant = {d for d in qrels.get(num, ()) if d in index}
        if relevant:
            out.append((num, " ".join(desc.split()), relevant))
    return out


def load_citing() -> list[Citing]:
    """The 50 citing papers (protocol 3): DOI, title, abstract and their unmarked references."""
    out = []
    for path in sorted(TOPICS.glob("papers/**/*.xml")):
        root = ET.parse(path).getroot()
        refs = set()
        for line in path.with_suffix(".dois").read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and not parts[0].startswith("-") and normalize_doi(parts[1]):
                refs.add(normalize_doi(parts[1]))
        out.append(Citing(normalize_doi(root.findtext("doi")), " ".join((root.findtext("title") or "").split()),
                          " ".join((root.findtext("abstract") or "").split()), refs))
    return out


def index_docs(docs: dict[str, Doc], blacklist: set[str], keep: set[str], limit: int | None,
               seed: int = 0) -> dict[str, Doc]:
    """The corpus minus the blacklist; with `limit`, every DOI in `keep` plus a seeded sample of the rest."""
    eligible = {d: doc for d, doc in docs.items() if d not in blacklist}
    if not limit or limit >= len(eligible):
        return eligible
    must = sorted(d for d in eligible if d in keep)
    rest = sorted(d for d in eligible if d not in keep)
    extra = np.random.default_rng(seed).permutation(len(rest))[:max(0, limit - len(must))]
    chosen = set(must) | {rest[i] for i in extra}
    return {d: doc for d, doc in eligible.items() if d in chosen}


def acm_index(limit: int | None):
    """(all docs, index docs, blacklist, contexts, citing papers) for protocols 2 and 3."""
    docs, blacklist, citing = load_corpus(), load_blacklist(), load_citing()
    every = {d for d in docs if d not in blacklist}
    keep = {d for _, _, rel in load_contexts(every) for d in rel} | {r for c in citing for r in c.references}
    chosen = index_docs(docs, blacklist, keep, limit)
    return docs, chosen, blacklist, load_contexts(set(chosen)), citing


def tuning_topics(contexts: list[tuple[str, str, set[str]]], seed: int = 0, share: float = 0.3) -> set[str]:
    """Topics of a seeded 30 % of the citing papers (a topic number is the citing paper's number + 3
    digits): anything tuned on ACM-CR is tuned on these alone, and the rest is reported as held out.
    Whole papers, not contexts, so that no paper's paragraphs sit on both sides."""
    papers = sorted({num[:-3] for num, _, _ in contexts})
    chosen = set(np.random.default_rng(seed).permutation(papers)[: int(len(papers) * share)].tolist())
    return {num for num, _, _ in contexts if num[:-3] in chosen}


def acm_paper(doi: str, doc: Doc) -> Paper:
    return Paper(title=doc.title or doi, abstract=doc.abstract, authors=doc.authors, doi=doi, source="acm-cr")


def default_workdir(name: str, limit: int | None) -> Path:
    return WORK / (f"{name}-limit{limit}" if limit else name)


# -- the catalog -----------------------------------------------------------------------------------

@dataclass
class Catalog:
    store: object
    embedder: object
    index: object
    report: dict
    bm25: object = None

    @property
    def model(self) -> str:
        return model_key(self.embedder)


def _progress(total: int):
    started = time.perf_counter()

    def report(done: int, _batch: int) -> None:
        if done % 2048 < 256 or done >= total:
            rate = done / max(time.perf_counter() - started, 1e-9)
            eta = (total - done) / rate if rate else float("inf")
            print(f"  embedded {done:,}/{total:,} ({rate:.1f}/s, ~{eta / 60:.0f} min left)", flush=True)
    return report


def open_catalog(workdir: Path, papers: list[Paper], spec: str, threads: int = 1) -> Catalog:
    """A catalog in `workdir` holding `papers` (upserted through papersift), indexed with build_index.
    Reused across runs: only papers without a vector for this embedder are embedded."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = open_store(str(workdir / "catalog.db"), migrate=True)
    seconds: dict = {}
    with timed(seconds, "upsert"):
        for i in range(0, len(papers), 5000):
            store.upsert_papers(papers[i:i + 5000])
    if store.count_papers() != len(papers):
        raise SystemExit(f"{workdir} holds {store.count_papers():,} papers, not the {len(papers):,} wanted: "
                         "it was built for another subset; pass another --workdir")
    embedder = create_embedder(spec, workdir / "models", threads=threads)
    todo = len(papers) - store.embedding_models().get(model_key(embedder), 0)
    print(f"catalog {workdir}: {len(papers):,} papers, {todo:,} to embed with {model_key(embedder)}", flush=True)
    with timed(seconds, "build_index"):
        report = build_index(store, embedder, workdir, on_progress=_progress(todo))
    print(f"  {report.summary()} ({seconds['build_index']:.0f} s)", flush=True)
    index = open_or_none(index_folder(workdir, embedder), expect_model=model_key(embedder))
    return Catalog(store, embedder, index, {"summary": report.summary(), "embedded_now": report.embedded,
                                            "seconds": {**seconds, **report.seconds}},
                   open_lexical_index(lexical_folder(workdir)))


def doi_of(store) -> dict[int, str]:
    """Catalog row id → DOI."""
    return {p.id: p.doi for p in store.iter_papers()}


# -- systems ---------------------------------------------------------------------------------------

def tfidf_rank(doc_keys: list[str], doc_texts: list[str], queries: list[str], depth: int = DEPTH,
               exclude: list[set[str]] | None = None, chunk: int = 256) -> list[list[str]]:
    """TF-IDF cosine (1–2-grams, sublinear tf, English stop words), top `depth` keys per query."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english",
                                 dtype=np.float32)
    matrix = vectorizer.fit_transform(doc_texts).T.tocsr()
    q = vectorizer.transform(queries)
    out: list[list[str]] = []
    for start in range(0, len(queries), chunk):
        sims = (q[start:start + chunk] @ matrix).toarray()
        for row, qi in zip(sims, range(start, start + chunk)):
            skip = exclude[qi] if exclude else ()
            want = depth + len(skip)
            top = np.argpartition(-row, want)[:want] if want < len(row) else np.arange(len(row))
            top = top[np.lexsort((top, -row[top]))]
            out.append([doc_keys[j] for j in top if doc_keys[j] not in skip][:depth])
    return out


def rrf_ids(lexical: Ranked, dense: Ranked, depth: int = DEPTH) -> list[int]:
    scores = fused_scores(lexical, dense, RRF)
    return sorted(scores, key=lambda i: (-scores[i], i))[:depth]


def search_runs(searcher: Searcher, doi: dict[int, str], queries: list[str], seconds: dict) -> dict[str, list]:
    """BM25, dense, RRF and default ranked DOIs for each query, timing each system's own calls."""
    runs: dict[str, list] = {"bm25": [], "dense": [], "rrf": [], "default": []}
    for text in queries:
        with timed(seconds, "bm25"):
            lexical = searcher.lexical(text, DEPTH, None)
        with timed(seconds, "dense"):
            dense = searcher.dense(text, DEPTH, None)
        with timed(seconds, "rrf_fusion_only"):
            fused = rrf_ids(lexical, dense)
        with timed(seconds, "default"):
            hits = searcher.search(text, limit=DEPTH)
        runs["bm25"].append([doi[i] for i, _ in lexical])
        runs["dense"].append([doi[i] for i, _ in dense])
        runs["rrf"].append([doi[i] for i in fused])
        runs["default"].append([h.paper_id.removeprefix("doi:") for h in hits])
    return runs


# -- main ------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="minilm", help="papersift embedder spec (default minilm; e.g. minilm:128)")
    ap.add_argument("--threads", type=int, default=1, help="embedder threads (default 1: leaves a core free)")
    ap.add_argument("--limit-docs", type=int, default=None,
                    help="index a seeded subset of N papers that keeps every relevant one (quick runs)")
    ap.add_argument("--workdir", help="catalog + index folder, reused (default bench/results/work/acmcr[-limitN])")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_acmcr.json"))
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    _, chosen, _, contexts, _ = acm_index(args.limit_docs)
    workdir = Path(args.workdir) if args.workdir else default_workdir("acmcr", args.limit_docs)
    print(f"{len(chosen):,} papers in the index, {len(contexts)} contexts with relevant papers", flush=True)
    catalog = open_catalog(workdir, [acm_paper(d, doc) for d, doc in chosen.items()], args.embedder, args.threads)
    searcher = Searcher(catalog.store, catalog.embedder, catalog.index, bm25=catalog.bm25)
    seconds: dict = {}
    texts = [text for _, text, _ in contexts]
    with timed(seconds, "tfidf"):
        runs = {"tfidf": tfidf_rank(list(chosen), [doc.text for doc in chosen.values()], texts)}
    runs.update(search_runs(searcher, doi_of(catalog.store), texts, seconds))
    values = per_query(runs, [rel for _, _, rel in contexts], SEARCH_METRICS)
    table = summary(values)
    print_table(f"ACM-CR contexts, {len(contexts)} queries over {len(chosen):,} papers:", table)
    paired = versus_best(values, "default", BASELINES)
    print(f"  default vs best baseline: {json.dumps(paired)}", flush=True)
    tuning = tuning_topics(contexts)
    held = [i for i, (num, _, _) in enumerate(contexts) if num not in tuning]
    held_values = {name: {m: v[held] for m, v in metrics.items()} for name, metrics in values.items()}
    held_table = summary(held_values)
    print_table(f"held out (not in the tuning split): {len(held)} queries", held_table)
    held_paired = versus_best(held_values, "default", BASELINES)
    write_result(args.out, {
        "protocol": "ACM-CR citation contexts (../shared/data/README.md, protocol 2)",
        "queries": len(contexts), "documents": len(chosen), "limit_docs": args.limit_docs,
        "embedder": args.embedder, "model": catalog.model, "workdir": str(workdir),
        "default_params": vars(searcher.params), "rrf_params": vars(RRF),
        "notes": "MRR over the top 100; relevant = qrels DOIs inside the index; BM25/dense/RRF/default are "
                 "papersift's own Searcher calls; the default is Searcher.search (convex fusion).",
        "systems": table, "paired_default_vs_best_baseline": paired,
        "tuning_split": {"topics": len(tuning), "rule": "a seeded 30 % of the citing papers (tuning_topics)"},
        "held_out": {"queries": len(held), "systems": held_table, "paired_default_vs_best_baseline": held_paired},
        "index": catalog.report,
        "seconds": {"per_system_all_queries": seconds, "index": catalog.report["seconds"]},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
