"""arXiv announcement RSS: the parser on a real 1,504-item feed of 2024-11-28, the empty (holiday) feed
and the error feed; broken copies of the real feed; the live client against a loopback replay server;
and one ingest through the runner into a real catalog."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter

import pytest
from replay import Reply

from papersift.errors import BadInput, SourceError
from papersift.ingest import arxiv_rss
from papersift.ingest.arxiv_rss import (
    fetch_arxiv_rss,
    normalize_categories,
    parse_arxiv_rss,
    split_rss_authors,
)
from papersift.ingest.http import PoliteClient
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem

FULL = "arxiv-rss/rss-2024-11-28-all-archives-1504-items.xml"
EMPTY = "arxiv-rss/rss-2024-empty-feed-test-category.xml"
ERROR = "arxiv-rss/rss-2024-error-bad-archive.xml"
DAY = dt.date(2024, 11, 28)


@pytest.fixture(scope="module")
def full_bytes() -> bytes:
    from replay import PAYLOADS

    return (PAYLOADS / FULL).read_bytes()


@pytest.fixture(scope="module")
def full_feed(full_bytes):
    return parse_arxiv_rss(full_bytes)


def by_id(feed, arxiv_id: str) -> Paper:
    return next(p for p in feed.papers if p.arxiv_id == arxiv_id)


# --- the real feed -----------------------------------------------------------------------------------

def test_real_feed_counts_and_date(full_feed):
    assert full_feed.error is None and full_feed.broken is None
    assert full_feed.date == DAY
    assert len(full_feed.records) == 1504
    assert all(isinstance(r, Paper) for r in full_feed.records)
    types = Counter(p.signals["announce_type"] for p in full_feed.papers)
    assert types == {"new": 926, "replace": 569, "cross": 9}
    assert len({p.arxiv_id for p in full_feed.papers}) == 1504


def test_listed_only_for_new_and_cross(full_feed):
    for paper in full_feed.papers:
        kind = paper.signals["announce_type"]
        if kind in ("new", "cross"):
            assert paper.listed == DAY and "replaced_on" not in paper.signals
        else:
            assert paper.listed is None and paper.signals["replaced_on"] == "2024-11-28"


def test_real_new_item(full_feed):
    first = full_feed.records[0]
    assert first.arxiv_id == "2411.17700" and first.version == 1
    assert first.title == ("Exploring the Impact of Generative AI on Cross-Border E-Commerce Brand Building "
                           "in Chinese Tianjin's Manufacturing Sector")
    assert first.authors == ("Jun Cui",)
    assert first.categories == ("cs.CY",)
    assert first.abstract.startswith("This study investigates the influence of generative artificial intelligence")
    assert "Announce Type" not in first.abstract and "arXiv:" not in first.abstract
    assert first.abstract.endswith("regression and structural equations (PLS-SEM).")
    assert first.signals["license"] == "http://creativecommons.org/licenses/by/4.0/"
    assert first.source == "arxiv-rss"


def test_real_replace_item_keeps_its_version(full_feed):
    last = full_feed.records[-1]
    assert last.arxiv_id == "2411.17697" and last.version == 2
    assert last.title == "StableAnimator: High-Quality Identity-Preserving Human Image Animation"
    assert last.authors == ("Shuyuan Tu", "Zhen Xing", "Xintong Han", "Zhi-Qi Cheng", "Qi Dai", "Chong Luo", "Zuxuan Wu")
    assert last.categories == ("cs.CV", "cs.AI")
    assert last.listed is None and last.signals == {
        "announce_type": "replace", "replaced_on": "2024-11-28",
        "license": "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"}


def test_real_cross_item_with_doi_and_journal_ref(full_feed):
    paper = by_id(full_feed, "2405.12090")
    assert paper.version == 3 and paper.signals["announce_type"] == "cross"
    assert paper.title == "Two-dimensional Synchrotron Beam Characterisation from a Single Interferogram"
    assert paper.categories == ("physics.acc-ph", "astro-ph.IM", "physics.optics")  # primary first
    assert paper.doi == "10.1103/physrevaccelbeams.27.112802"
    assert paper.journal_ref == "Phys. Rev. Accel. Beams 27, (2024) 112802"
    assert paper.listed == DAY
    assert paper.authors[0] == "Bojan Nikolic" and len(paper.authors) == 5
    cross = [p.arxiv_id for p in full_feed.papers if p.signals["announce_type"] == "cross"]
    assert cross[0] == "2202.06515" and cross[-1] == "2411.17699"
    assert sum(1 for p in full_feed.papers if p.doi) == 111
    assert sum(1 for p in full_feed.papers if p.journal_ref) == 97


def test_real_authors_latex_and_affiliations(full_feed):
    assert by_id(full_feed, "2411.17775").authors == ("Václav Vavryčuk",)  # V\'aclav Vavry\v{c}uk
    paper = by_id(full_feed, "2411.17748")
    assert paper.authors == ("Mohammed Riadh Berramdane", "Alexandre Battiston", "Michele Bardi",
                             "Nicolas Blet", "Benjamin Rémy", "Matthieu Urbain")
    assert paper.signals["affiliations"]["Nicolas Blet"] == "LEMTA"
    assert not any("(" in a or "\\" in a for p in full_feed.papers for a in p.authors)


def test_split_authors_keeps_commas_inside_affiliations():
    names, places = split_rss_authors(
        "Yuxiu Shao (School of Systems Science, Beijing Normal University, Beijing, China), "
        "David Dahmen (Institute for Advanced Simulation) and Benjamin R\\'emy")
    assert names == ("Yuxiu Shao", "David Dahmen", "Benjamin Rémy")
    assert places["Yuxiu Shao"] == "School of Systems Science, Beijing Normal University, Beijing, China"


def test_empty_feed_is_normal(payload):
    feed = parse_arxiv_rss(payload(EMPTY))
    assert feed.records == [] and feed.error is None and feed.broken is None
    assert feed.date == DAY and feed.title == "test updates on arXiv.org"


def test_error_feed(payload):
    feed = parse_arxiv_rss(payload(ERROR))
    assert feed.records == []
    assert feed.error.startswith("Bad archive 'astroph'. Valid archive names are: astro-ph, cond-mat, cs,")


# --- broken copies of the real feed ------------------------------------------------------------------

def nth_item_offset(data: bytes, n: int) -> int:
    offset = -1
    for _ in range(n):
        offset = data.index(b"<item>", offset + 1)
    return offset


def test_truncated_feed_keeps_complete_items(full_bytes, full_feed):
    cut = full_bytes[: nth_item_offset(full_bytes, 101) + 200]
    feed = parse_arxiv_rss(cut)
    assert feed.papers == full_feed.papers[:100]
    assert isinstance(feed.records[-1], Problem)
    assert feed.records[-1].position == "item 101" and "cut-off XML" in feed.records[-1].reason
    assert feed.broken and feed.date == DAY


def test_item_without_title_and_with_bad_date(full_bytes):
    start = nth_item_offset(full_bytes, 5)
    end = full_bytes.index(b"</item>", start)
    item = full_bytes[start:end]
    title = item[item.index(b"<title>"): item.index(b"</title>") + len(b"</title>")]
    data = full_bytes[:start] + item.replace(title, b"<title>  </title>") + full_bytes[end:]
    start7 = nth_item_offset(data, 7)
    data = data[:start7] + data[start7:].replace(b"<pubDate>Thu, 28 Nov 2024 00:00:00 -0500</pubDate>",
                                                 b"<pubDate>Thursday the 28th</pubDate>", 1)
    feed = parse_arxiv_rss(data)
    problems = [r for r in feed.records if isinstance(r, Problem)]
    assert [(p.position, p.reason) for p in problems] == [
        ("item 5 (2411.17704)", "missing title"), ("item 7 (2411.17706)", "unreadable date 'Thursday the 28th'")]
    assert len(feed.papers) == 1502 and feed.broken is None


def test_item_without_id(full_bytes):
    data = full_bytes.replace(b"<link>https://arxiv.org/abs/2411.17701</link>", b"<link>https://example.org/x</link>", 1)
    data = data.replace(b"oai:arXiv.org:2411.17701v1", b"urn:x", 1).replace(b"arXiv:2411.17701v1 Announce", b"Announce", 1)
    feed = parse_arxiv_rss(data)
    assert isinstance(feed.records[1], Problem) and feed.records[1].position == "item 2"
    assert "no arXiv id" in feed.records[1].reason and len(feed.papers) == 1503


def test_garbage_bytes():
    feed = parse_arxiv_rss(b"\x89PNG\r\n\x1a\n\x00\x00garbage")
    assert feed.papers == [] and feed.broken and len(feed.records) == 1
    feed = parse_arxiv_rss(b"<html><body>Service unavailable</body></html>")
    assert feed.papers == [] and "not an RSS feed" in feed.broken


# --- live ----------------------------------------------------------------------------------------------

@pytest.fixture
def client():
    with PoliteClient(delay=0.0, sleep=lambda s: None) as c:
        yield c


def test_fetch_happy_path(replay_server, client, payload):
    replay_server.add("/rss/cs.CL+cs.LG", Reply(payload(FULL)))
    records = list(fetch_arxiv_rss(client, replay_server.url + "/rss/", "cs.CL, cs.LG"))
    assert len(records) == 1504 and records[0].arxiv_id == "2411.17700"
    assert [r.path for r in replay_server.requests] == ["/rss/cs.CL+cs.LG"]


def test_fetch_empty_feed(replay_server, client, payload):
    replay_server.add("/rss/test", Reply(payload(EMPTY)))
    assert list(fetch_arxiv_rss(client, replay_server.url + "/rss", "test")) == []


def test_fetch_error_feed_raises(replay_server, client, payload):
    replay_server.add("/rss/astroph", Reply(payload(ERROR)))
    with pytest.raises(SourceError) as e:
        list(fetch_arxiv_rss(client, replay_server.url + "/rss/", "astroph"))
    assert "Bad archive 'astroph'" in e.value.message and "category" in e.value.hint


def test_fetch_maintenance_page_raises(replay_server, client):
    replay_server.add("/rss/cs", Reply("<html><body>down for maintenance</body></html>", content_type="text/html"))
    with pytest.raises(SourceError, match="not a readable arXiv RSS feed"):
        list(fetch_arxiv_rss(client, replay_server.url + "/rss/", "cs"))


def test_bad_category_names():
    assert normalize_categories("cs.CL+cs.AI") == "cs.CL+cs.AI"
    assert normalize_categories(" math  cs.LG ") == "math+cs.LG"
    with pytest.raises(BadInput):
        normalize_categories("cs.CL/../x")


def test_run_source_end_to_end(replay_server, payload, store, tmp_path, monkeypatch):
    from papersift.settings import load_settings

    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    settings = load_settings({"arxiv_api_url": replay_server.url + "/api/query",
                              "arxiv_rss_url": replay_server.url + "/rss/", "http_delay": 0.0,
                              "data_dir": str(tmp_path), "config_file": str(tmp_path / "none.toml")})
    replay_server.add("/rss/cs.CL+cs.LG", Reply(payload(FULL)))
    spec = arxiv_rss.SOURCES[0]
    assert spec.name == "arxiv-rss" and spec.resume_key("cs.CL+cs.LG", {}) is None
    report = run_source(store, spec, "cs.CL+cs.LG", settings)
    assert (report.status, report.seen, report.added, report.skipped) == ("done", 1504, 1504, 0)
    assert store.count_papers() == 1504
    stored = store.get_paper("2411.17697")
    assert stored.version == 2 and stored.listed is None and stored.signals["announce_type"] == "replace"
    assert store.get_paper("2411.17700").listed == DAY
    again = run_source(store, spec, "cs.CL+cs.LG", settings)
    assert (again.added, again.unchanged) == (0, 1504)
    assert store.count_papers() == 1504


def test_open_a_saved_feed_file(tmp_path, payload, settings):
    path = tmp_path / "feed.xml"
    path.write_bytes(payload(ERROR))
    with pytest.raises(SourceError, match="Bad archive"):
        list(arxiv_rss.SOURCES[0].open(str(path), settings, None, {}))
    path.write_bytes(payload(EMPTY))
    assert list(arxiv_rss.SOURCES[0].open(str(path), settings, None, {})) == []
