"""`papersift update`, the daily job: real sources replayed on loopback, a real catalog and model;
a failing source is reported and the rest proceeds; one run at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from replay import Reply

from papersift.cli import main
from papersift.errors import Conflict
from papersift.jobs import parse_sources, run_steps, update_lock


@pytest.fixture
def env(clean_env, monkeypatch, replay_server):
    monkeypatch.setenv("PAPERSIFT_HF_DAILY_URL", replay_server.url + "/api/daily_papers")
    monkeypatch.setenv("PAPERSIFT_ARXIV_RSS_URL", replay_server.url + "/rss/")
    monkeypatch.setenv("PAPERSIFT_HTTP_DELAY", "0")
    monkeypatch.setenv("PAPERSIFT_HTTP_RETRIES", "0")
    return clean_env


def test_parse_sources():
    assert parse_sources("arxiv-rss:cs.CL+cs.LG  hf-daily") == [("arxiv-rss", "cs.CL+cs.LG"), ("hf-daily", "")]
    assert parse_sources("") == []


def test_update_fetches_indexes_and_reports_a_failing_source(env, replay_server, capsys):
    replay_server.add("/api/daily_papers", Reply.payload("hf-daily-papers/daily_papers-2026-06-12-raw.json",
                                                         content_type="application/json"))
    replay_server.add("/rss/astroph", Reply.payload("arxiv-rss/rss-2024-error-bad-archive.xml"))
    code = main(["update", "--sources", "arxiv-rss:astroph hf-daily:2026-06-12", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False  # one source failed ...
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["fetch arxiv-rss astroph"]["ok"] is False and "astroph" in steps["fetch arxiv-rss astroph"]["summary"]
    assert steps["fetch hf-daily 2026-06-12"]["ok"] is True  # ... and the rest went on
    assert steps["index"]["ok"] is True and "embedded 30 papers" in steps["index"]["summary"]
    # the new papers are searchable at once
    item = json.loads(Reply.payload("hf-daily-papers/daily_papers-2026-06-12-raw.json").body)[7]["paper"]
    assert main(["search", "--json", "--limit", "1", item["title"]]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == item["id"]
    # a second run with nothing new does nothing twice
    assert main(["update", "--sources", "hf-daily:2026-06-12", "--json"]) == 0
    again = {s["name"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert "0 added" in again["fetch hf-daily 2026-06-12"]["summary"]
    assert "embedded 0 papers" in again["index"]["summary"]


def test_one_update_at_a_time(tmp_path):
    with update_lock(tmp_path):
        with pytest.raises(Conflict, match="another `papersift update` is running"):
            with update_lock(tmp_path):
                pass
        # another process too (flock is per open file, so this is what cron's second run sees)
        code = ("import sys; from pathlib import Path; from papersift.jobs import update_lock\n"
                "try:\n    update_lock(Path(sys.argv[1])).__enter__()\nexcept Exception as e:\n    print(type(e).__name__)")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "Conflict"
    with update_lock(tmp_path):  # released: the next run gets it
        pass


def test_a_crashing_step_does_not_stop_the_rest():
    def boom() -> str:
        raise RuntimeError("disk on fire")
    report = run_steps([("one", lambda: "fine"), ("two", boom), ("three", lambda: "also fine")])
    assert [s.ok for s in report.steps] == [True, False, True]
    assert "RuntimeError: disk on fire" in report.steps[1].summary and not report.ok


def test_update_sends_digests_and_the_cli_previews_one(env, replay_server, capsys, monkeypatch):
    """The daily job's digest step and `papersift digest`: pending subscriptions are asked to confirm,
    written as .eml files here (the SMTP path is tested against a real server in test_notify_*)."""
    import email

    from papersift.settings import load_settings
    from papersift.store import open_store

    replay_server.add("/api/daily_papers", Reply.payload("hf-daily-papers/daily_papers-2026-06-12-raw.json",
                                                         content_type="application/json"))
    assert main(["update", "--sources", "hf-daily:2026-06-12", "--json"]) == 0
    report = {s["name"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert report["digests"]["ok"] and "mail is not configured" in report["digests"]["summary"]
    settings = load_settings({})
    store = open_store(settings.resolved_database_url)
    store.upsert_subscription("reader@example.org", "daily", ["cs.CL"])
    user = store.create_user("reader", "reader@example.org")
    out = env / "mail"
    assert main(["digest", "--to-folder", str(out)]) == 0
    assert "1 confirmation(s)" in capsys.readouterr().out
    sent = [email.message_from_bytes(p.read_bytes()) for p in out.glob("*.eml")]
    assert len(sent) == 1 and sent[0]["To"] == "reader@example.org"
    assert main(["digest", "--preview", user.username, "--out", str(env / "preview")]) == 0
    paths = capsys.readouterr().out.split()
    assert [p.rsplit(".", 1)[1] for p in paths] == ["eml", "html", "txt"]
    assert "http://localhost:8000/" in (env / "preview" / Path(paths[1]).name).read_text()
