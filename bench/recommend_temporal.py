"""Temporal check of personal recommendations on real arXiv data: "For you" on papers nobody has seen yet.

    .venv/bin/python bench/recommend_temporal.py [--split 2026-06-01] [--days 7] [--readers 500] [--plan]

Data: the 74,728 arXiv papers of ../shared/data/arxiv-daily, read from the catalog that the web benchmark
built (bench/results/work/web/catalog.db, opened read-only), with its static-tier vectors and the MiniLM
vectors it has; the MiniLM vectors it lacks are embedded here and cached in bench/results/work/recommend_temporal.
Protocol (seed 0 throughout):
  * Keywords: per arXiv category with >= 500 papers before the split date D, title bigrams (stop words out,
    a plural "s" folded) found in 0.3-3 % of the category's pre-D titles; a keyword that matches more than
    5 % of the category's pre-D papers (title or abstract) is too broad to be an interest and is dropped.
  * A reader = 1 category (weighted by sqrt(size)) plus, half the time, a second one co-listed with it
    (weighted by co-listings), and 1-3 keywords drawn from the top-200 bigrams of those categories.
    Strict relevance: the paper is listed in one of the reader's categories (cross-lists count) AND its
    lower-cased, punctuation-free title or abstract contains one of the keywords (with an optional plural s).
  * Library ("saves") = a random 5-30 of the reader's strictly relevant papers listed before D.
  * temporal split: candidates = every paper listed in [D, D + days); random split (the control that the
    usual offline protocols amount to): candidates = a random pool of as many papers listed before D, kept
    out of every library. A reader is kept when >= 5 papers could be saved and both pools hold >= 3
    strictly relevant papers; readers are drawn until --readers are kept.
  * Soft relevance (second view): the same number of papers as the strict view marks, taken among the
    candidates in the reader's categories by MiniLM cosine to the keyword phrases (max over keywords).
    The strict view is partly circular: relevance is a keyword test, and the library was chosen by the
    same test, so lexical rankers are favoured; the soft view is MiniLM's judgement, so if anything it
    leans towards the MiniLM rankers. A real reader lies somewhere between: read the two together.
Systems (each ranks every candidate; top 50 kept): random; recency (newest first, arXiv id breaks ties);
category (the reader's categories first, random within); tfidf_svm (arxiv-sanity-lite: TF-IDF 1-2-grams,
20k features, min_df 5, max_df 0.1, sublinear tf, fitted on the pre-D papers; LinearSVC C 0.01 balanced,
positives = library, negatives = a fixed random 5,000 pre-D papers); tfidf_centroid (cosine to the mean of the
library's TF-IDF rows); bm25_library (BM25 k1 1.2 b 0.75 over the candidates, the library's words as the
query, weight 1 + log tf); {static,minilm}_profile (cosine to the mean library vector); {static,minilm}_top3
(mean of the 3 best cosines); {static,minilm}_svm (tfidf_svm's classifier on the vectors: is it the
features or the learner?); default_{static,minilm}: papersift.rank.feed.content_scores with weights 1 and
no dismissals; default_minilm+mmr: that order re-ranked by the feed's MMR, as the feed shows it.
Metrics per reader: Recall@20/50, nDCG@10; mean with 95 % bootstrap CI, and paired bootstraps (bench/metrics.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "bench" / "results" / "work" / "web" / "catalog.db"
WORK = ROOT / "bench" / "results" / "work" / "recommend_temporal"
QUIET = Path("/tmp/papersift-quiet")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import paired_bootstrap, per_query, print_table, summary, timed, versus_best, write_result  # noqa: E402

from papersift.index.build import model_key, paper_text  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.rank.feed import content_scores, mmr  # noqa: E402
from papersift.store import open_store  # noqa: E402

MINILM = "all-MiniLM-L6-v2@onnx-int8-tok256-b1"
METRICS = ("recall@20", "recall@50", "ndcg@10")
K = 50
# words that make a title bigram a phrase of style, not a topic ("large scale", "generation using")
GENERIC = {"using", "based", "via", "toward", "towards", "novel", "new", "large", "scale", "effective", "efficient",
           "improving", "enhancing", "approach", "framework", "method", "methods", "study", "analysis", "driven"}
CATEGORY = re.compile(r"^[a-z-]+\.[A-Za-z-]+$")
BASELINES = ("random", "recency", "category", "tfidf_svm", "tfidf_centroid", "bm25_library", "static_profile",
             "static_top3", "static_svm", "minilm_profile", "minilm_top3", "minilm_svm")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def title_bigrams(title: str) -> set[str]:
    """Topic-like word pairs of a title, a plural s folded ("language models" → "language model")."""
    toks = words(title)
    fold = lambda w: w[:-1] if w.endswith("s") and not w.endswith(("ss", "us", "is", "ies")) else w  # noqa: E731
    return {f"{a} {fold(b)}" for a, b in zip(toks, toks[1:]) if not ({a, b} & ENGLISH_STOP_WORDS or {a, b} & GENERIC)
            and len(a) > 2 and len(b) > 2 and not (a.isdigit() or b.isdigit())}


def matches(norm_text: str, keyword: str) -> bool:
    return f" {keyword} " in norm_text or f" {keyword}s " in norm_text


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def wait_quiet(seconds: dict) -> None:
    """Other benchmarks share this machine: hold heavy steps while they ask for quiet."""
    t = time.perf_counter()
    while QUIET.exists():
        time.sleep(30)
    seconds["waited_for_quiet"] = round(seconds.get("waited_for_quiet", 0) + time.perf_counter() - t, 1)


def open_catalog():
    store = open_store(str(CATALOG))
    # this catalog belongs to the web benchmark: every connection is read-only
    store._connect = lambda: sqlite3.connect(f"file:{CATALOG}?mode=ro", uri=True, check_same_thread=False)
    return store


def minilm_vectors(store, embedder, papers: list, seconds: dict) -> np.ndarray:
    """MiniLM vectors of `papers`, in order: the catalog's, then this benchmark's cache, then embedded here."""
    assert model_key(embedder) == MINILM, model_key(embedder)
    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / "minilm.npz"  # arXiv id → vector, for the papers the catalog has no MiniLM vector of
    cached: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            cached = dict(zip(z["ids"].tolist(), z["vectors"]))
    ids, vecs = store.paper_embeddings(MINILM, [p.id for p in papers], 384)
    catalog = dict(zip(ids.tolist(), vecs))
    missing = [p for p in papers if p.id not in catalog and p.arxiv_id not in cached]
    print(f"MiniLM: {len(catalog):,} vectors in the catalog, {len(cached):,} cached, {len(missing):,} to embed", flush=True)
    if missing:
        wait_quiet(seconds)
        with timed(seconds, "embed_minilm"):
            for start in range(0, len(missing), 256):
                chunk = missing[start:start + 256]
                cached.update(zip([p.arxiv_id for p in chunk], embedder.embed([paper_text(p.title, p.abstract) for p in chunk])))
                keys = sorted(cached)
                np.savez(cache, ids=np.array(keys), vectors=np.stack([cached[k] for k in keys]))
                print(f"  embedded {start + len(chunk):,}/{len(missing):,}", flush=True)
        seconds["embedded"] = len(missing)
        seconds["embedded_per_s"] = round(len(missing) / seconds["embed_minilm"], 1)
    return np.stack([catalog[p.id] if p.id in catalog else cached[p.arxiv_id] for p in papers]).astype(np.float32)


def bm25_matrix(texts: list[str]):
    """Candidates × words, BM25-weighted (k1 1.2, b 0.75, IDF over the candidates), and the word counter."""
    from sklearn.feature_extraction.text import CountVectorizer

    counter = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b")
    tf = counter.fit_transform(texts).tocsr().astype(np.float64)
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log1p((len(texts) - df + 0.5) / (df + 0.5))
    length = np.asarray(tf.sum(axis=1)).ravel()
    norm_len = np.repeat(1.2 * (0.25 + 0.75 * length / length.mean()), np.diff(tf.indptr))
    tf.data = tf.data * 2.2 / (tf.data + norm_len)
    return counter, tf.multiply(idf[None, :]).tocsr()


def draw_readers(papers, cats, norm, pre, in_pool, rng, wanted: int) -> tuple[list[dict], int]:
    """Simulated readers (the protocol in the docstring), drawn until `wanted` are kept."""
    pre_idx = np.flatnonzero(pre)
    members: dict[str, list[int]] = {}
    for i in pre_idx:
        for c in cats[i]:
            members.setdefault(c, []).append(i)
    big = sorted(c for c, m in members.items() if len(m) >= 500)
    vocab: dict[str, list[str]] = {}
    hits_of: dict[tuple[str, str], np.ndarray] = {}  # (category, keyword) → papers (all dates) matching
    cat_rows = {c: np.array([i for i in range(len(papers)) if c in cats[i]]) for c in big}
    for c in big:
        df = Counter(b for i in members[c] for b in title_bigrams(papers[i].title))
        n = len(members[c])
        band = [b for b, k in df.most_common() if 0.003 * n <= k <= 0.03 * n]
        keep = []
        for b in band:
            rows = cat_rows[c][[matches(norm[i], b) for i in cat_rows[c]]]
            if pre[rows].sum() <= 0.05 * n:
                keep.append(b)
                hits_of[(c, b)] = rows
            if len(keep) == 200:
                break
        vocab[c] = keep
    co = {c: Counter(d for i in members[c] for d in cats[i] if d != c and d in vocab and vocab[d]) for c in big}
    firsts = [c for c in big if vocab[c]]
    weight = np.sqrt([len(members[c]) for c in firsts])
    readers, seen, attempts = [], set(), 0
    while len(readers) < wanted and attempts < 50 * wanted:
        attempts += 1
        first = str(rng.choice(firsts, p=weight / weight.sum()))
        profile = [first]
        if rng.random() < 0.5 and co[first]:
            names, counts = zip(*sorted(co[first].items()))
            profile.append(str(rng.choice(names, p=np.array(counts) / sum(counts))))
        kw_pool = sorted({(c, b) for c in profile for b in vocab[c]})
        picks = rng.choice(len(kw_pool), size=min(int(rng.integers(1, 4)), len(kw_pool)), replace=False)
        keywords = sorted({kw_pool[j][1] for j in picks})
        key = (tuple(sorted(profile)), tuple(keywords))
        if key in seen:
            continue
        seen.add(key)
        rel = set()
        for c in profile:
            rows = cat_rows[c]
            for kw in keywords:
                if (c, kw) not in hits_of:  # a keyword of the other category
                    hits_of[(c, kw)] = rows[[matches(norm[i], kw) for i in rows]]
                rel.update(hits_of[(c, kw)].tolist())
        rel = np.array(sorted(rel), dtype=np.int64)
        savable = rel[pre[rel] & ~in_pool[rel]]
        if len(savable) < 5 or (~pre[rel]).sum() < 3 or in_pool[rel].sum() < 3:
            continue
        library = np.sort(rng.choice(savable, size=min(int(rng.integers(5, 31)), len(savable)), replace=False))
        readers.append({"categories": profile, "keywords": keywords, "library": library,
                        "relevant": {"temporal": set(rel[~pre[rel]].tolist()), "random": set(rel[in_pool[rel]].tolist())}})
    return readers, attempts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="2026-06-01")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--readers", type=int, default=500)
    ap.add_argument("--plan", action="store_true", help="draw the readers, say how much must be embedded, stop")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "recommend_temporal.json"))
    args = ap.parse_args()
    uptime_start = uptime()
    seconds: dict = {}
    split = dt.date.fromisoformat(args.split)
    end = split + dt.timedelta(days=args.days)
    store = open_catalog()
    with timed(seconds, "load"):
        papers = [p for p in store.iter_papers(batch=5000) if p.listed and p.listed < end]
    papers.sort(key=lambda p: (p.listed, p.arxiv_id or ""))
    cats = [frozenset(c for c in p.categories if CATEGORY.match(c)) for p in papers]
    norm = [" " + " ".join(words(f"{p.title} {p.abstract}")) + " " for p in papers]
    pre = np.array([p.listed < split for p in papers])
    rng = np.random.default_rng(0)
    pre_idx = np.flatnonzero(pre)
    window = np.flatnonzero(~pre)
    pool = np.sort(rng.choice(pre_idx, size=len(window), replace=False))  # the random-split candidates
    in_pool = np.zeros(len(papers), bool)
    in_pool[pool] = True

    with timed(seconds, "readers"):
        readers, attempts = draw_readers(papers, cats, norm, pre, in_pool, rng, args.readers)
    print(f"{len(readers)} readers kept of {attempts} drawn; {len(window):,} candidates {split}..{end}", flush=True)
    # the SVMs' background; drawn after the readers from the same stream, so another --readers draws others
    negatives = np.sort(rng.choice(pre_idx[~in_pool[pre_idx]], size=5000, replace=False))
    needed = sorted(set(window.tolist()) | set(pool.tolist()) | set(negatives.tolist())
                    | {int(i) for r in readers for i in r["library"]})
    if args.plan:
        ids, _ = store.paper_embeddings(MINILM, [papers[i].id for i in needed], 384)
        print(f"{len(needed):,} papers need MiniLM vectors, {len(needed) - len(ids):,} not in the catalog")
        for r in readers[:12]:
            print(r["categories"], r["keywords"], len(r["library"]), {k: len(v) for k, v in r["relevant"].items()})
        return

    # -- vectors -----------------------------------------------------------------------------------------
    static_key = next(m for m in store.embedding_models() if m.startswith("all-MiniLM-L6-v2-static@"))
    row = {i: j for j, i in enumerate(needed)}
    by_id = dict(zip(*store.paper_embeddings(static_key, [papers[i].id for i in needed], 256)))
    static = np.stack([by_id[papers[i].id] for i in needed])  # a KeyError here: the catalog lacks static vectors
    embedder = create_embedder("minilm", ROOT / "bench" / "results" / "work" / "models")
    minilm = minilm_vectors(store, embedder, [papers[i] for i in needed], seconds)
    keywords = sorted({kw for r in readers for kw in r["keywords"]})
    kw_vec = dict(zip(keywords, embedder.embed(keywords)))

    # -- lexical features (fitted on pre-D papers only) --------------------------------------------------
    from scipy.sparse import vstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC
    texts = [f"{p.title} {p.abstract}" for p in papers]
    wait_quiet(seconds)
    with timed(seconds, "tfidf_fit"):
        tfidf = TfidfVectorizer(strip_accents="unicode", stop_words="english", token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b",
                                ngram_range=(1, 2), max_features=20000, min_df=5, max_df=0.1, sublinear_tf=True)
        tfidf.fit([texts[i] for i in pre_idx])
        tf_rows = tfidf.transform([texts[i] for i in needed])

    # -- rank ---------------------------------------------------------------------------------------------
    result: dict = {"protocol": __doc__.split("Protocol (seed 0 throughout):")[1].split("Systems")[0].strip(),
                    "split_date": str(split), "window_days": args.days, "catalog": str(CATALOG.relative_to(ROOT)),
                    "static_model": static_key, "minilm_model": MINILM, "readers": len(readers),
                    "readers_drawn": attempts, "papers_before_split": int(pre.sum()), "views": {}}
    svms: dict[int, dict] = {}
    neg_rows = np.array([row[i] for i in negatives])
    for split_name, cand in (("temporal", window), ("random", pool)):
        c_rows = np.array([row[i] for i in cand])
        c_tf, c_st, c_ml = tf_rows[c_rows], static[c_rows], minilm[c_rows]
        counter, c_bm = bm25_matrix([texts[i] for i in cand])
        newest = np.lexsort((np.array([papers[i].arxiv_id for i in cand]), np.array([str(papers[i].listed) for i in cand])))[::-1]
        position = {int(i): j for j, i in enumerate(cand)}
        runs: dict[str, list] = {}
        relevant = {"strict": [], "soft": []}
        overlap = []
        t = time.perf_counter()
        for n, r in enumerate(readers):
            rr = np.random.default_rng([1, n])
            lib = np.array([row[i] for i in r["library"]])
            out: dict[str, np.ndarray] = {"random": rr.permutation(len(cand)), "recency": newest}
            in_cat = np.array([bool(cats[i] & set(r["categories"])) for i in cand])
            shuffled = rr.permutation(len(cand))
            out["category"] = shuffled[np.argsort(~in_cat[shuffled], kind="stable")]
            if n not in svms:  # one set of classifiers per reader, for both splits
                neg = neg_rows[~np.isin(negatives, r["library"])]
                y = np.r_[np.ones(len(lib)), np.zeros(len(neg))]
                svms[n] = {name: LinearSVC(class_weight="balanced", C=0.01, tol=1e-6, max_iter=10000).fit(x, y) for name, x in
                           (("tfidf", vstack([tf_rows[lib], tf_rows[neg]])), ("static", static[np.r_[lib, neg]]),
                            ("minilm", minilm[np.r_[lib, neg]]))}
            scores = {f"{name}_svm": svms[n][name].decision_function(x) for name, x in
                      (("tfidf", c_tf), ("static", c_st), ("minilm", c_ml))}
            centroid = np.asarray(tf_rows[lib].mean(axis=0)).ravel()
            scores["tfidf_centroid"] = c_tf @ (centroid / max(np.linalg.norm(centroid), 1e-12))
            q = np.asarray(counter.transform([texts[i] for i in r["library"]]).sum(axis=0)).ravel()
            scores["bm25_library"] = c_bm @ np.where(q > 0, 1 + np.log(np.maximum(q, 1)), 0)
            for tier, cv, lv in (("static", c_st, static[lib]), ("minilm", c_ml, minilm[lib])):
                sims = cv @ lv.T
                profile = lv.mean(axis=0)
                scores[f"{tier}_profile"] = cv @ (profile / np.linalg.norm(profile))
                scores[f"{tier}_top3"] = np.sort(sims, axis=1)[:, -min(3, len(lib)):].mean(axis=1)
                no_dismissals = np.zeros((0, cv.shape[1]), np.float32)
                scores[f"default_{tier}"] = content_scores(cv, lv, np.ones(len(lib), np.float32), no_dismissals)
            for name, s in scores.items():
                out[name] = np.argsort(-s, kind="stable")
            out["default_minilm+mmr"] = mmr(out["default_minilm"], scores["default_minilm"], c_ml)
            for name, order in out.items():
                runs.setdefault(name, []).append(order[:K].tolist())
            strict = {position[i] for i in r["relevant"][split_name]}
            cat_idx = np.flatnonzero(in_cat)
            closeness = (c_ml[cat_idx] @ np.stack([kw_vec[k] for k in r["keywords"]]).T).max(axis=1)
            soft = set(cat_idx[np.argsort(-closeness, kind="stable")[:len(strict)]].tolist())
            relevant["strict"].append(strict)
            relevant["soft"].append(soft)
            overlap.append(len(strict & soft) / len(strict | soft))
        seconds[f"rank_{split_name}"] = round(time.perf_counter() - t, 1)
        for view in ("strict", "soft"):
            values = per_query(runs, relevant[view], METRICS)
            table = summary(values)
            print_table(f"{split_name} split, {view} relevance: {len(readers)} readers", table)
            pairs = {"default_minilm_vs_best_baseline": versus_best(values, "default_minilm", BASELINES),
                     "default_static_vs_best_baseline": versus_best(values, "default_static", BASELINES)}
            for a, b in (("default_minilm", "minilm_top3"), ("default_minilm", "minilm_profile"),
                         ("default_minilm", "default_static"), ("default_minilm+mmr", "default_minilm"),
                         ("default_minilm", "tfidf_svm"), ("default_minilm", "minilm_svm"), ("tfidf_svm", "minilm_svm")):
                pairs[f"{a}_vs_{b}"] = {m: paired_bootstrap(values[a][m], values[b][m]) for m in METRICS}
            n_kw = np.array([len(r["keywords"]) for r in readers])  # 1-3 interests in one library
            by_kw = {f"{k}_keywords": {"readers": int((n_kw == k).sum())} | {
                name: round(float(values[name]["recall@20"][n_kw == k].mean()), 4)
                for name in ("tfidf_svm", "minilm_svm", "minilm_profile", "default_minilm")} for k in (1, 2, 3)}
            result["views"][f"{split_name}/{view}"] = {"systems": table, "paired": pairs, "recall@20_by_keyword_count": by_kw}
        result[f"{split_name}_candidates"] = len(cand)
        result[f"{split_name}_relevant_per_reader"] = {"mean": round(float(np.mean([len(s) for s in relevant["strict"]])), 1),
                                                       "median": float(np.median([len(s) for s in relevant["strict"]]))}
        result[f"{split_name}_strict_soft_jaccard"] = round(float(np.mean(overlap)), 3)
    result["caveats"] = [
        "strict relevance is a keyword test and the libraries were drawn with it: circular, lexical rankers favoured",
        "soft relevance is MiniLM's cosine to the keyword phrases: if anything it favours the MiniLM rankers",
        "simulated readers: 1-3 keyword interests in 1-2 categories, not real saving behaviour; libraries are unweighted",
        "the SVMs' C (0.01, arxiv-sanity-lite's) is untuned for every feature set; the feed's age decay and CF blend are off"]
    result["library_size"] = {"mean": round(float(np.mean([len(r["library"]) for r in readers])), 1)}
    result["example_readers"] = [{"categories": r["categories"], "keywords": r["keywords"], "library": len(r["library"]),
                                  "relevant_temporal": len(r["relevant"]["temporal"])} for r in readers[:8]]
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "papersift"], capture_output=True, text=True)
    result["git"] = {"commit": git, "uncommitted_in_papersift": dirty.stdout.split("\n")[:-1]}
    result["seconds"] = seconds
    result["machine"] = {"uptime_at_start": uptime_start, "uptime_at_end": uptime()}
    write_result(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
