"""The `papersift` command: each command end to end, help with examples, errors without tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from papersift.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT.parent / "shared" / "data" / "payloads"


@pytest.fixture
def env(clean_env):
    return clean_env


def run(*args) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "papersift"
    cmd = [str(script), *args] if script.exists() else [sys.executable, "-m", "papersift.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_command_has_help_with_an_example():
    parser = build_parser()
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    for name, sub in subparsers.choices.items():
        assert "example:" in sub.format_help(), name
        if name == "ingest":
            sources = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"][0]
            for source, sp in sources.choices.items():
                text = sp.format_help()
                assert re.search(r"example:\s+papersift ingest " + re.escape(source), text), source


def test_demo_stats_show_config(env, capsys):
    assert main(["demo", "--quiet", "--no-index"]) == 0  # the index step is tested on its own
    out = capsys.readouterr().out
    assert "sample" in out and "3,467 added" in out
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["papers"] == 3467
    assert stats["last_listed"] == "2026-07-01"
    # a paper from the bundled sample, by id and by URL
    assert main(["show", "https://arxiv.org/abs/2606.32040v2", "--json"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["title"] == "FaceMoE: Mixture of Experts for Low-Resolution Face Recognition"
    assert main(["show", "2606.32040"]) == 0
    assert "FaceMoE" in capsys.readouterr().out
    # demo again: idempotent
    assert main(["demo", "--quiet", "--no-index"]) == 0
    assert "0 added" in capsys.readouterr().out


def test_config_show_masks_secrets_and_says_where_values_come_from(env, capsys, monkeypatch):
    monkeypatch.setenv("PAPERSIFT_SECRET_KEY", "hunter2-very-secret")
    (env / "papersift.toml").write_text("http_delay = 5\n")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "****" in out
    assert re.search(r"http_delay\s+5\.0\s+\(file ", out)
    assert re.search(r"data_dir\s+\S+\s+\(env PAPERSIFT_DATA_DIR\)", out)


def test_errors_are_messages_with_hints_not_tracebacks(env):
    missing = run("ingest", "arxiv-daily", str(env / "nope.jsonl.gz"))
    assert missing.returncode == 1
    assert "error: no such file" in missing.stderr and "hint:" in missing.stderr
    assert "Traceback" not in missing.stderr
    unknown = run("show", "2401.99999")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert run("init").returncode == 0
    unknown = run("show", "2401.99999")
    assert unknown.returncode == 1 and "no paper" in unknown.stderr
    garbage = run("show", "not-an-id")
    assert garbage.returncode == 1 and "hint:" in garbage.stderr
    bad_config = env / "papersift.toml"
    bad_config.write_text("batch_size = [")
    broken = run("stats")
    assert broken.returncode == 1 and "not valid TOML" in broken.stderr


def test_ingest_reports_skipped_records_on_stderr(env):
    path = env / "broken.jsonl"
    path.write_text('{"id": "2501.00001", "title": "Fine", "first_listed": "2025-01-02"}\nnot json\n')
    result = run("ingest", "arxiv-daily", str(path), "--quiet")
    assert result.returncode == 0
    assert "1 added" in result.stdout and "1 skipped" in result.stdout
    assert "line 2: not JSON" in result.stderr


def test_ingest_a_real_payload_file(env):
    result = run("ingest", "kaggle", str(PAYLOADS / "kaggle-arxiv-snapshot" / "arxiv-metadata-oai-snapshot-head200.jsonl"),
                 "--quiet")
    assert result.returncode == 0, result.stderr
    assert "200 added" in result.stdout
    shown = run("show", "0704.0001", "--json")
    assert json.loads(shown.stdout)["doi"] == "10.1103/physrevd.76.013009"


def test_index_fast_then_search_and_related(env, capsys, tmp_path):
    import gzip
    import itertools

    corpus = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"
    small = tmp_path / "small.jsonl"
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 30000, 30120))
    small.write_text("".join(lines), encoding="utf-8")
    first = json.loads(lines[0])
    assert main(["ingest", "arxiv-daily", str(small), "--quiet"]) == 0
    # the static tier alone: search and related work from it
    assert main(["index", "--embedder", "static", "--quiet"]) == 0
    assert "static: " in capsys.readouterr().out
    assert main(["related", first["id"], "--json"]) == 0
    related = json.loads(capsys.readouterr().out)
    assert len(related) == 10 and first["id"] not in [h["id"] for h in related]
    # --fast: the static tier (already done: nothing to embed), then the full model
    assert main(["index", "--fast", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "static: " in out and "embedded 0 papers" in out.splitlines()[0]
    assert "minilm: " in out and "embedded 120 papers" in out.splitlines()[1]
    assert main(["search", first["title"], "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == first["id"] and hits[0]["reason"] == "the title you searched for"
    assert "matches your words and their meaning" in [h["reason"] for h in hits[1:]]  # both signals serve
    # a misspelt common word is corrected, and the table says so
    from collections import Counter

    counts = Counter(w for line in lines for w in set(re.findall(r"[a-z]{9,}", json.loads(line)["abstract"])))
    word = counts.most_common(1)[0][0]
    typo = word[:3] + word[4:]
    assert main(["search", f"{typo} methods", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"showing results for: {word} methods")


# SQLite's alone: `serve` on a PostgreSQL catalog, with workers, is tests/test_web_postgres.py
@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_runs_the_site_with_workers(web_settings):
    """`papersift serve` as a user runs it: a real process, two uvicorn workers, real HTTP."""
    import socket
    import time
    import urllib.request

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    script = Path(sys.executable).parent / "papersift"
    cmd = [str(script), "--data-dir", str(web_settings.resolved_data_dir), "--config", "/nonexistent.toml",
           "serve", "--port", str(port), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERSIFT_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline, html = time.monotonic() + 90, None
        while time.monotonic() < deadline and html is None:
            try:
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.3)
        assert html is not None and "Daily papers" in html
        api = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/daily_papers?limit=3", timeout=10).read())
        assert len(api) == 3 and api[0]["paper"]["listed"] == "2026-07-01"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "serving on http://localhost:" in out and "2 workers" in out


def test_database_passwords_are_never_printed(env, capsys, monkeypatch):
    monkeypatch.setenv("PAPERSIFT_DATABASE_URL", "postgresql://ada:s3cr3t-pw@db.example.org:5432/papers")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-pw" not in out and "postgresql://ada:***@db.example.org:5432/papers" in out
