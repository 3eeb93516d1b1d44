"""The `papersift` command: parse arguments, call the library, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Sequence

from papersift import __version__
from papersift.errors import PapersiftError
from papersift.settings import load_settings, masked_url


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _command(sub, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {example}",
                          formatter_class=_Formatter)


def build_parser() -> argparse.ArgumentParser:
    from papersift.ingest import all_sources

    parser = argparse.ArgumentParser(
        prog="papersift", formatter_class=_Formatter,
        description="Self-hosted research-paper discovery: ingest papers, keep a catalog, search and rank them.",
        epilog="example:\n  papersift demo            # catalog + bundled sample of real papers\n"
               "  papersift ingest arxiv-daily ../shared/data/arxiv-daily/arxiv_papers.jsonl.gz",
    )
    parser.add_argument("--version", action="version", version=f"papersift {__version__}")
    parser.add_argument("--data-dir", help="folder for the catalog and indexes (PAPERSIFT_DATA_DIR)")
    parser.add_argument("--database-url", help="catalog path or URL (PAPERSIFT_DATABASE_URL)")
    parser.add_argument("--config", dest="config_file", help="settings file (default papersift.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    _command(sub, "init", "Create the catalog, or upgrade its schema.", "papersift init")

    p = _command(sub, "ingest", "Add papers from a source to the catalog (idempotent; resumes after a crash).",
                 "papersift ingest arxiv-daily ../shared/data/arxiv-daily/arxiv_papers.jsonl.gz")
    p.add_argument("--batch-size", type=int, help="papers per transaction (default 1000)")
    sources = p.add_subparsers(dest="source", metavar="SOURCE")
    sources.required = True
    for spec in all_sources().values():
        sp = _command(sources, spec.name, spec.help, spec.example)
        sp.add_argument("target", nargs=None if spec.target_required else "?", default="",
                        help=spec.target_help)
        for opt, opt_help in spec.options:
            sp.add_argument(f"--{opt}", dest=f"opt_{opt}", help=opt_help)
        sp.add_argument("--fresh", action="store_true", help="ignore a saved resume point and start over")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "stats", "Show what the catalog holds.", "papersift stats --json")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "show", "Show one paper by arXiv id, arXiv URL or DOI.", "papersift show 2506.12345")
    p.add_argument("ref", help="arXiv id (any form: 2401.01234v2, arXiv:…, abs/pdf URL, hep-th/9901001) or DOI")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "config", "Show settings and where each value comes from.", "papersift config show")
    p.add_argument("action", choices=["show"], help="show")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "index", "Bring full text, embeddings and the vector index in step with the catalog "
                 "(only what changed; resumable).", "papersift index")
    p.add_argument("--embedder", help="embedder spec (default setting `embedder`, e.g. minilm, minilm-fp32, static)")
    p.add_argument("--fast", action="store_true",
                   help="index with the static tier first (thousands of papers/s: searchable in minutes), then "
                        "with the full model; interrupt and rerun at will, search uses the best complete index")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "search", "Search the catalog by words and meaning.",
                 'papersift search "retrieval augmented generation" --category cs.CL --since 2026-06-01')
    p.add_argument("query", help="words, \"a phrase\", prefix*, an arXiv id/URL or a DOI")
    p.add_argument("--category", help="only papers in this category (cross-lists included)")
    p.add_argument("--since", help="first listed on or after YYYY-MM-DD")
    p.add_argument("--until", help="first listed on or before YYYY-MM-DD")
    p.add_argument("--author", help="only papers with this author (exact name)")
    p.add_argument("--limit", type=int, default=10, help="results (default 10, at most 200)")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "related", "Papers related to one paper.", "papersift related 2606.32040 --json")
    p.add_argument("ref", help="arXiv id, URL or DOI")
    p.add_argument("--limit", type=int, default=10, help="results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "demo", "Create the catalog, load the bundled sample of real recent arXiv papers and "
                 "index it (then `papersift serve`).", "papersift demo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-index", action="store_true", help="only load the papers")

    p = _command(sub, "update", "The daily job: fetch new papers, index them, refresh recommendations, send due "
                 "digests. Safe from cron: one run at a time; a failed step is reported and the rest go on.",
                 "papersift update   # e.g. from cron: 30 1 * * * papersift update --quiet")
    p.add_argument("--sources", help="instead of the `update_sources` setting, e.g. 'arxiv-rss:cs.CL hf-daily'")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="print only failures")

    p = _command(sub, "digest", "Send due email digests and confirmations now, or preview one reader's digest.",
                 "papersift digest --preview ada --out previews/")
    p.add_argument("--preview", metavar="USER", help="write the digest USER (name, id or email) would get, send nothing")
    p.add_argument("--out", default=".", help="folder for the preview's .eml/.html/.txt (default: here)")
    p.add_argument("--to-folder", help="write the emails as .eml files into this folder instead of sending them")

    p = _command(sub, "db", "Catalog maintenance: copy the catalog to another database (SQLite → PostgreSQL), verify.",
                 "papersift db migrate-to postgresql://user@host/papersift")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    m = _command(dbsub, "migrate-to", "Copy the whole catalog into another one (normally PostgreSQL) and verify it "
                 "by counts and checksums; rerun the same command to resume after a crash.",
                 "papersift db migrate-to postgresql://user@host/papersift")
    m.add_argument("url", help="the target catalog: postgresql://… or a SQLite path")
    m.add_argument("--batch-size", dest="copy_batch", type=int, default=2000, help="papers per transaction")
    m.add_argument("--no-fulltext", action="store_true", help="skip indexing the target for search")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    v = _command(dbsub, "verify", "Compare the catalog with another one, part by part (counts and checksums).",
                 "papersift db verify postgresql://user@host/papersift")
    v.add_argument("url", help="the other catalog")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    c = _command(dbsub, "compact", "Give back the space of deleted and rewritten rows (SQLite VACUUM, PostgreSQL "
                 "VACUUM ANALYZE); on SQLite, stop serve/index/update first.", "papersift db compact")
    c.add_argument("--json", action="store_true", help="print the sizes as JSON")

    p = _command(sub, "serve", "Run the website and JSON API.", "papersift serve --port 8000")
    p.add_argument("--host", help="listen address (default setting `host`, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default setting `port`, 8000)")
    p.add_argument("--workers", type=int, help="worker processes (default setting `workers`, 1)")
    return parser


def _settings(args, **overrides):
    return load_settings({"data_dir": args.data_dir, "database_url": args.database_url,
                          "config_file": args.config_file,
                          "batch_size": getattr(args, "batch_size", None), **overrides})


def _open_store(settings, migrate: bool = True):
    from papersift.store import open_store

    return open_store(settings.resolved_database_url, migrate=migrate)


def _progress_ingest(store, spec, target: str, settings, opts: dict, fresh: bool, quiet: bool):
    from tqdm import tqdm

    from papersift.ingest.runner import run_source

    bar = tqdm(desc=f"ingest {spec.name}", unit=" records", disable=quiet or None, file=sys.stderr,
               dynamic_ncols=True)

    def progress(report):
        bar.update(report.seen - bar.n)
        bar.set_postfix(added=report.added, skipped=report.skipped, refresh=False)

    try:
        return run_source(store, spec, target, settings, opts=opts, fresh=fresh, on_progress=progress)
    finally:
        bar.close()


def _print_report(report) -> None:
    print(report.summary())
    if report.problems:
        print(f"{report.skipped:,} record(s) skipped:", file=sys.stderr)
        for problem in report.problems[:10]:
            print(f"  {problem}", file=sys.stderr)
        if report.skipped > 10:
            print(f"  … and {report.skipped - 10:,} more (`papersift stats` keeps the first 100)", file=sys.stderr)


def cmd_init(args) -> int:
    settings = _settings(args)
    store = _open_store(settings, migrate=False)
    applied = store.migrate()
    state = f"applied {', '.join(applied)}" if applied else "already up to date"
    print(f"catalog {store.url} (schema {store.schema_version()}): {state}")
    return 0


def cmd_ingest(args) -> int:
    from papersift.ingest import get_source

    settings = _settings(args)
    spec = get_source(args.source)
    opts = {name: getattr(args, f"opt_{name}") for name, _ in spec.options}
    store = _open_store(settings)
    report = _progress_ingest(store, spec, args.target, settings, opts, args.fresh, args.quiet)
    _print_report(report)
    return 0


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_stats(args) -> int:
    settings = _settings(args)
    stats = _open_store(settings, migrate=False).stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats), indent=2))
        return 0
    print(f"catalog       {masked_url(settings.resolved_database_url)} (schema {stats.schema_version}, "
          f"{_human_size(stats.size_bytes)})")
    print(f"papers        {stats.papers:,}")
    if stats.first_listed:
        print(f"listed        {stats.first_listed} … {stats.last_listed}")
    print(f"authors       {stats.authors:,}")
    print(f"readers       {stats.users:,} ({stats.interactions:,} interactions, {stats.collections:,} collections, "
          f"{stats.subscriptions:,} subscriptions)")
    if stats.by_category:
        print("top categories " + ", ".join(f"{c} {n:,}" for c, n in stats.by_category))
    if stats.by_source:
        print("by source     " + ", ".join(f"{s or '?'} {n:,}" for s, n in stats.by_source))
    for run in stats.last_runs[:3]:
        print(f"last ingest   {run['started_at']} {run['source']} {run['target']}: {run['status']}, "
              f"{run['added']:,} added, {run['updated']:,} updated, {run['skipped']:,} skipped")
    return 0


def _paper_json(paper) -> dict:
    d = dataclasses.asdict(paper)
    for k in ("submitted", "updated", "listed"):
        d[k] = d[k].isoformat() if d[k] else None
    d["ref"] = paper.ref
    d["abs_url"], d["pdf_url"] = paper.abs_url, paper.pdf_url
    d.pop("raw", None)
    return d


def cmd_show(args) -> int:
    settings = _settings(args)
    paper = _open_store(settings, migrate=False).get_paper(args.ref)
    if args.json:
        print(json.dumps(_paper_json(paper), indent=2, ensure_ascii=False))
        return 0
    print(paper.title)
    print(", ".join(paper.authors))
    ident = [f"arXiv:{paper.arxiv_id}v{paper.version}" if paper.version else f"arXiv:{paper.arxiv_id}"] \
        if paper.arxiv_id else []
    if paper.doi:
        ident.append(f"doi:{paper.doi}")
    print("  ".join(ident + [" ".join(paper.categories)]))
    dates = [f"{k} {v}" for k, v in (("submitted", paper.submitted), ("updated", paper.updated),
                                      ("listed", paper.listed)) if v]
    if dates:
        print("  ".join(dates))
    if paper.withdrawn:
        print("WITHDRAWN")
    if paper.abs_url:
        print(paper.abs_url)
    print()
    print(paper.abstract)
    return 0


def cmd_config(args) -> int:
    settings = _settings(args)
    rows = settings.show()
    if args.json:
        print(json.dumps([dict(zip(("name", "value", "origin", "help"), r)) for r in rows], indent=2))
        return 0
    width = max(len(r[0]) for r in rows)
    for name, value, origin, _help in rows:
        print(f"{name:<{width}}  {value}  ({origin})")
    return 0


def cmd_demo(args) -> int:
    from papersift.ingest import get_source

    settings = _settings(args)
    store = _open_store(settings)
    report = _progress_ingest(store, get_source("sample"), "", settings, {}, False, args.quiet)
    _print_report(report)
    print()
    args.json = False
    cmd_stats(args)
    if not args.no_index:
        args.embedder, args.fast = None, False
        print()
        cmd_index(args)
        print("\nnext: `papersift serve` and open the address it prints")
    return 0


def cmd_update(args) -> int:
    from papersift.jobs import parse_sources, run_steps, update_lock, update_steps

    settings = _settings(args)
    sources = parse_sources(args.sources) if args.sources is not None else None

    def show(step) -> None:
        if not args.json and (not args.quiet or not step.ok):
            mark = "ok  " if step.ok else "FAIL"
            print(f"{mark} {step.name} ({step.seconds:.1f} s): {step.summary}", flush=True,
                  file=sys.stdout if step.ok else sys.stderr)

    with update_lock(settings.resolved_data_dir):
        store = _open_store(settings)
        report = run_steps(update_steps(store, settings, sources=sources, extra=_update_extra(store, settings)), show)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


def _update_extra(store, settings) -> list:
    from papersift.jobs import digest_step, recommend_step

    return [("recommendations", recommend_step(store, settings)), ("digests", digest_step(store, settings))]


def cmd_digest(args) -> int:
    from papersift.jobs import digest_step, feed_picks
    from papersift.notify.send import preview, resolve_base_url, save_preview

    settings = _settings(args)
    store = _open_store(settings)
    base_url = None
    if not settings.base_url:
        base_url = "http://localhost:8000"
        print(f"note: base_url is not set: links in emails start with {base_url}", file=sys.stderr)
    if args.preview:
        message = preview(store, settings, args.preview, picks=feed_picks(store, settings),
                          base_url=resolve_base_url(settings, base_url))
        for path in save_preview(message, args.out):
            print(path)
        if message["X-Papersift-Preview"] != "yes":
            print(f"note: {message['X-Papersift-Preview']}", file=sys.stderr)
        return 0
    print(digest_step(store, settings, folder=args.to_folder, base_url=base_url)())
    return 0


def _compact(settings, args) -> int:
    store = _open_store(settings)  # an upgrade's migrations first: they may be what left the free space
    try:
        started = time.perf_counter()
        before, after = store.compact()
    finally:
        store.close()
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"bytes_before": before, "bytes_after": after, "seconds": round(seconds, 1)}))
    else:
        print(f"compacted {masked_url(settings.resolved_database_url)}: {before / 1e6:,.1f} MB → "
              f"{after / 1e6:,.1f} MB in {seconds:.1f} s")
    return 0


def cmd_db(args) -> int:
    from tqdm import tqdm

    from papersift.store import open_store
    from papersift.store.copy import copy_catalog, verify_catalog

    settings = _settings(args)
    if args.db_command == "compact":
        return _compact(settings, args)
    if masked_url(args.url) == masked_url(settings.resolved_database_url) or args.url == settings.resolved_database_url:
        raise PapersiftError("the target is the catalog itself", hint="name another database")
    source = _open_store(settings, migrate=False)
    target = open_store(args.url, migrate=args.db_command == "migrate-to")
    bars: dict = {}

    def progress(part, done, total) -> None:
        if args.quiet or args.json:
            return
        if part not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            bars[part] = tqdm(desc=part, total=total, unit=" rows", file=sys.stderr, dynamic_ncols=True)
        bars[part].update(done - bars[part].n)

    if not args.json:
        print(f"{'migrating' if args.db_command == 'migrate-to' else 'comparing'} "
              f"{masked_url(settings.resolved_database_url)} → {masked_url(args.url)}", flush=True)
    try:
        if args.db_command == "migrate-to":
            report = copy_catalog(source, target, batch=args.copy_batch, on_progress=progress,
                                  fulltext=not args.no_fulltext)
        else:
            report = verify_catalog(source, target)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return 0 if report.verified else 1
    print(f"{'part':<28} {'copied':>9} {'skipped':>8} {'failed':>7} {'source':>9} {'target':>9}  ok  seconds")
    for name, part in report.parts.items():
        print(f"{name[:28]:<28} {part.copied:>9,} {part.skipped:>8,} {part.failed:>7,} {part.source_count or 0:>9,} "
              f"{part.target_count or 0:>9,}  {'yes' if part.verified else 'NO ':<3} {part.seconds:>7.1f}")
    for problem in report.problems[:20]:
        print(f"problem: {problem}", file=sys.stderr)
    if report.gaps:
        print("not copied:")
        for gap in report.gaps:
            print(f"  - {gap}")
    print(f"{'verified' if report.verified else 'NOT verified'} in {report.seconds:.1f} s")
    if report.verified and args.db_command == "migrate-to":
        # the data dir's indexes name the catalog they were built from: `index` rebuilds them for the copy
        print("next: set database_url to the target (papersift.toml or PAPERSIFT_DATABASE_URL), then run "
              "`papersift index`")
    if not report.verified:
        for name, part in report.parts.items():
            if not part.verified:
                print(f"{name} differs: {part.differences}", file=sys.stderr)
        print("hint: rerun the same command: it resumes and fills in what is missing", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args) -> int:
    from papersift.web.serve import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None}
    settings = _settings(args, **overrides)
    return serve(settings)


def _discovery(settings):
    """Search and related papers over the catalog: the configured model's index, or the fast tier's
    while the configured one is still being built (`papersift index --fast`)."""
    from papersift.rank.service import Discovery

    store = _open_store(settings)
    return Discovery(store, settings.resolved_data_dir, settings.embedder, api_key=settings.embedder_api_key)


def cmd_index(args) -> int:
    from tqdm import tqdm

    from papersift.index.build import FAST_TIER, build_index
    from papersift.index.embed import create_embedder

    settings = _settings(args)
    store = _open_store(settings)
    models = settings.resolved_data_dir / "models"
    specs = [args.embedder or settings.embedder]
    if args.fast and specs[0].strip().lower() != FAST_TIER:
        specs.insert(0, FAST_TIER)
    for spec in specs:
        embedder = create_embedder(spec, models, api_key=settings.embedder_api_key)
        bar = tqdm(desc=f"embed ({spec})", unit=" papers", disable=args.quiet or None, file=sys.stderr,
                   dynamic_ncols=True)
        try:
            report = build_index(store, embedder, settings.resolved_data_dir,
                                 on_progress=lambda done, n, bar=bar: bar.update(n))
        finally:
            bar.close()
        print(f"{spec}: {report.summary()}", flush=True)
    return 0


def _date_arg(value: str | None, name: str):
    import datetime as dt

    from papersift.errors import BadInput

    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"--{name} {value!r} is not a date", hint="use YYYY-MM-DD") from None


def _print_hits(store, hits, as_json: bool) -> None:
    papers = {p.ref: p for p in (store.find_paper(h.paper_id) for h in hits) if p is not None}
    if as_json:
        print(json.dumps([dict(id=h.paper_id, score=h.score if h.score != float("inf") else None, reason=h.reason,
                               title=papers[h.paper_id].title, authors=list(papers[h.paper_id].authors),
                               categories=list(papers[h.paper_id].categories),
                               listed=(papers[h.paper_id].listed or "") and papers[h.paper_id].listed.isoformat())
                          for h in hits if h.paper_id in papers], indent=2, ensure_ascii=False))
        return
    if not hits:
        print("no results")
    for n, h in enumerate(hits, 1):
        p = papers.get(h.paper_id)
        if p is None:
            continue
        authors = ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")
        print(f"{n:>3}. {p.title}")
        print(f"     {h.paper_id}  {p.primary_category or ''}  {p.listed or ''}  {authors}")
        print(f"     {h.reason}")


def cmd_search(args) -> int:
    from papersift.store.fulltext import Filters

    discovery = _discovery(_settings(args))
    if not discovery.has_vectors:
        print("note: no search index yet: searching words only, in what was last indexed "
              "(run `papersift index`)", file=sys.stderr)
    filters = Filters(category=args.category, since=_date_arg(args.since, "since"),
                      until=_date_arg(args.until, "until"), author=args.author)
    page = discovery.search_page(args.query, limit=args.limit, offset=args.offset, filters=filters)
    if page.corrections:
        print(f"showing results for: {page.query}", file=sys.stderr if args.json else sys.stdout)
    _print_hits(discovery.store, page.hits, args.json)
    return 0


def cmd_related(args) -> int:
    discovery = _discovery(_settings(args))
    if not discovery.has_vectors:
        raise PapersiftError("there is no search index yet", hint="run `papersift index` first")
    _print_hits(discovery.store, discovery.related(args.ref, k=args.limit), args.json)
    return 0


COMMANDS = {"init": cmd_init, "ingest": cmd_ingest, "index": cmd_index, "search": cmd_search, "related": cmd_related,
            "stats": cmd_stats, "show": cmd_show, "config": cmd_config, "demo": cmd_demo, "serve": cmd_serve,
            "update": cmd_update, "digest": cmd_digest, "db": cmd_db}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except PapersiftError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: every finished batch is saved; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
