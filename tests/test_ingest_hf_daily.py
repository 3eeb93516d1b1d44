"""Hugging Face daily papers, on a real recorded /api/daily_papers reply (featured day 2026-06-12),
parsed directly and served by a real loopback HTTP server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from replay import Reply

from papersift.errors import SourceError
from papersift.ingest.hf_daily import SOURCES, fetch_hf_daily, open_hf_daily, parse_hf_daily
from papersift.ingest.http import PoliteClient
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem
from papersift.settings import load_settings

RECORDED = "hf-daily-papers/daily_papers-2026-06-12-raw.json"
PATH = "/api/daily_papers"
SPEC = SOURCES[0]


@pytest.fixture(scope="module")
def reply_bytes() -> bytes:
    return (Path(__file__).resolve().parents[2] / "shared" / "data" / "payloads" / RECORDED).read_bytes()


@pytest.fixture(scope="module")
def items(reply_bytes):
    return json.loads(reply_bytes)


@pytest.fixture(scope="module")
def papers(reply_bytes) -> dict[str, Paper]:
    records = list(parse_hf_daily(reply_bytes))
    assert all(isinstance(r, Paper) for r in records)
    return {p.arxiv_id: p for p in records}


def _json(items) -> Reply:
    return Reply(json.dumps(items), content_type="application/json; charset=utf-8")


def _client(waits: list) -> PoliteClient:
    return PoliteClient(delay=0.0, retries=3, timeout=10.0, sleep=waits.append, backoff=2.0)


def test_every_real_item_parses_in_order(reply_bytes, papers):
    records = list(parse_hf_daily(reply_bytes))
    assert len(records) == 30 and len(papers) == 30
    assert [p.arxiv_id for p in records][:3] == ["2606.00467", "2606.12730", "2606.13594"]
    assert all(p.source == "hf-daily" and p.title and p.abstract and p.authors for p in records)


def test_real_values_of_one_item(papers):
    p = papers["2606.13392"]
    assert p.title == "MiniMax Sparse Attention"
    assert p.authors[:2] == ("Xunhao Lai", "Weiqi Xu") and len(p.authors) == 11
    assert p.signals["hf_upvotes"] == 103
    assert p.signals["github_repo"] == "https://github.com/MiniMax-AI/MSA"
    assert p.signals["github_stars"] == 251
    assert p.signals["ai_keywords"][:3] == ["sparse attention", "Grouped Query Attention", "Top-k selection"]
    assert p.signals["ai_summary"].startswith("MiniMax Sparse Attention enables efficient processing")
    assert p.signals["organization"] == "MiniMaxAI"
    assert p.signals["num_comments"] == 4
    assert p.signals["hf_submitted_by"] == "ryanlee-dev"
    assert p.links == {
        "abs": "https://arxiv.org/abs/2606.13392", "pdf": "https://arxiv.org/pdf/2606.13392",
        "hf": "https://huggingface.co/papers/2606.13392", "code": "https://github.com/MiniMax-AI/MSA",
    }
    assert not p.withdrawn and p.categories == ()


def test_featured_day_is_not_the_arxiv_date(papers, items):
    # 2606.00467: on arXiv 2026-05-30 (paper.publishedAt), featured on HF 2026-06-12 (submittedOnDailyAt);
    # the item's own publishedAt, 2026-05-29T20:00Z, is the arXiv day at US Eastern midnight
    p = papers["2606.00467"]
    assert p.submitted == dt.date(2026, 5, 30)
    assert p.signals["hf_featured_on"] == "2026-06-12"
    assert items[0]["publishedAt"] == "2026-05-29T20:00:00.000Z"
    assert {q.signals["hf_featured_on"] for q in papers.values()} == {"2026-06-12"}
    assert p.authors == ("Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez")
    # upvotes 0 is a value, kept; no GitHub repo, no code link
    assert p.signals["hf_upvotes"] == 0
    assert "github_repo" not in p.signals and "code" not in p.links
    assert p.signals["organization"] == "caltech"
    assert papers["2606.12730"].signals.get("organization") is None  # an item without organization
    assert papers["2606.13594"].signals["project_page"] == "https://chicychen.github.io/dense-hetero-latent-mas/"


def test_raw_item_json_is_kept(papers, items):
    for item in items:
        assert json.loads(papers[item["paper"]["id"]].raw) == item
    assert '"isAuthorParticipating"' in papers["2606.00467"].raw  # fields we do not model survive


def test_submitter_key_user_or_name_and_fallbacks(items):
    item = json.loads(json.dumps(items[0]))
    del item["paper"]["submittedOnDailyBy"]
    del item["paper"]["submittedOnDailyAt"]
    item["submittedBy"] = {"user": "someone"}  # `user` rather than `name`
    [p] = parse_hf_daily(json.dumps([item]))
    assert p.signals["hf_submitted_by"] == "someone"
    assert p.signals["hf_featured_on"] == "2026-05-29"  # no submittedOnDailyAt: the item's date
    item["submittedBy"] = {"name": "RKocielnik"}
    [p] = parse_hf_daily(json.dumps([item]))
    assert p.signals["hf_submitted_by"] == "RKocielnik"


def test_item_level_title_then_paper_title_and_withdrawn(items):
    item = json.loads(json.dumps(items[1]))
    del item["title"], item["summary"]
    item["paper"]["withdrawnAt"] = "2026-06-13T10:00:00.000Z"
    [p] = parse_hf_daily(json.dumps([item]))
    assert p.title == items[1]["paper"]["title"] and p.abstract.startswith(items[1]["paper"]["summary"][:40])
    assert p.withdrawn


def test_broken_items_are_problems_and_the_rest_lands(items):
    no_id = json.loads(json.dumps(items[2]))
    del no_id["paper"]["id"]
    no_title = json.loads(json.dumps(items[3]))
    del no_title["title"], no_title["paper"]["title"]
    reply = json.dumps([items[0], no_id, 42, no_title, {"title": "no paper"}, items[4]])
    records = list(parse_hf_daily(reply))
    problems = [(r.position, r.reason) for r in records if isinstance(r, Problem)]
    assert problems == [
        ("item 2", "missing or malformed arXiv id None"),
        ("item 3", "expected a JSON object, got int"),
        ("item 4", "2606.13174: missing title"),
        ("item 5", "no `paper` object"),
    ]
    assert [r.arxiv_id for r in records if isinstance(r, Paper)] == ["2606.00467", "2606.10423"]


def test_a_reply_that_is_not_an_array_is_one_problem(reply_bytes):
    [problem] = parse_hf_daily(b'{"error": "Invalid date"}')
    assert problem.position == "reply" and "expected a JSON array" in problem.reason
    assert "Invalid date" in problem.reason
    [problem] = parse_hf_daily(reply_bytes[:5000])  # a cut-off reply
    assert problem.position == "reply" and problem.reason.startswith("not JSON")
    assert list(parse_hf_daily(b"[]")) == []


def test_fetch_a_day_sends_the_date(replay_server, reply_bytes):
    replay_server.add(PATH, Reply(reply_bytes, content_type="application/json"))
    with _client([]) as client:
        records = list(fetch_hf_daily(client, replay_server.url + PATH, "2026-06-12"))
    assert len(records) == 30 and all(isinstance(r, Paper) for r in records)
    [request] = replay_server.requests
    assert request.path == PATH and request.query == {"date": ["2026-06-12"]}
    with _client([]) as client:
        list(fetch_hf_daily(client, replay_server.url + PATH, None))
    assert replay_server.requests[-1].query == {}  # the latest day: no date parameter


def test_fetch_an_empty_day(replay_server):
    replay_server.add(PATH, _json([]))
    with _client([]) as client:
        assert list(fetch_hf_daily(client, replay_server.url + PATH, "2026-06-13")) == []


def test_fetch_retries_429_honouring_retry_after(replay_server, reply_bytes):
    replay_server.add(PATH, Reply("slow down", status=429, headers={"Retry-After": "7"}, content_type="text/plain"),
                      Reply(reply_bytes, content_type="application/json"))
    waits: list[float] = []
    with _client(waits) as client:
        records = list(fetch_hf_daily(client, replay_server.url + PATH, "2026-06-12"))
    assert len(records) == 30
    assert waits == [7.0] and len(replay_server.requests) == 2


def test_fetch_a_500_that_never_recovers_is_a_source_error(replay_server):
    replay_server.add(PATH, Reply("boom", status=500, content_type="text/plain"))
    waits: list[float] = []
    with _client(waits) as client, pytest.raises(SourceError, match="HTTP 500 after 4 tries"):
        list(fetch_hf_daily(client, replay_server.url + PATH, "2026-06-12"))
    assert waits == [2.0, 4.0, 8.0] and len(replay_server.requests) == 4


def test_fetch_a_reply_that_is_not_an_array_is_a_source_error(replay_server):
    replay_server.add(PATH, _json({"error": "Invalid date"}))
    with _client([]) as client, pytest.raises(SourceError, match="expected a JSON array"):
        list(fetch_hf_daily(client, replay_server.url + PATH, "2026-06-12"))


@pytest.fixture
def live_settings(replay_server, tmp_path):
    return load_settings({"hf_daily_url": replay_server.url + PATH, "http_delay": 0.0, "data_dir": str(tmp_path),
                          "config_file": str(tmp_path / "none.toml")}, environ={})


def test_run_source_end_to_end_then_idempotent(store, replay_server, reply_bytes, live_settings):
    replay_server.add(PATH, Reply(reply_bytes, content_type="application/json"))
    report = run_source(store, SPEC, "2026-06-12", live_settings)
    assert (report.status, report.seen, report.added, report.skipped) == ("done", 30, 30, 0)
    p = store.get_paper("2606.13392")
    assert p.signals["hf_upvotes"] == 103 and p.links["hf"] == "https://huggingface.co/papers/2606.13392"
    assert json.loads(p.raw)["paper"]["id"] == "2606.13392"
    again = run_source(store, SPEC, "2026-06-12", live_settings)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 30)
    assert replay_server.requests[0].query == {"date": ["2026-06-12"]}


def test_hf_item_merges_into_the_paper_from_another_source(store, replay_server, reply_bytes, live_settings):
    store.upsert_papers([Paper(
        title="MiniMax Sparse Attention", arxiv_id="2606.13392", version=2, categories=("cs.CL", "cs.LG"),
        submitted=dt.date(2026, 6, 11), source="arxiv-daily", listed=dt.date(2026, 6, 12),
    )])
    replay_server.add(PATH, Reply(reply_bytes, content_type="application/json"))
    report = run_source(store, SPEC, "2026-06-12", live_settings)
    assert (report.added, report.updated) == (29, 1)
    assert store.count_papers() == 30
    p = store.get_paper("2606.13392")
    assert p.categories == ("cs.CL", "cs.LG") and p.version == 2  # the other source's fields stay
    assert p.listed == dt.date(2026, 6, 12)
    assert p.signals["hf_upvotes"] == 103 and p.links["code"] == "https://github.com/MiniMax-AI/MSA"


def test_open_a_saved_reply_and_bad_targets(tmp_path, reply_bytes, settings):
    saved = tmp_path / "daily.json"
    saved.write_bytes(reply_bytes)
    assert sum(isinstance(r, Paper) for r in open_hf_daily(str(saved), settings, None, {})) == 30
    with pytest.raises(SourceError, match="no such file"):
        list(open_hf_daily(str(tmp_path / "missing.json"), settings, None, {}))
    with pytest.raises(Exception, match="not a calendar date"):
        list(open_hf_daily("2026-02-30", settings, None, {}))
    assert SPEC.resume_key("2026-06-12", {}) is None and not SPEC.target_required
