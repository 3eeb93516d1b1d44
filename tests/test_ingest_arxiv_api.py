"""arXiv API Atom feeds: the parser on every recorded payload (2026 serializer and the legacy one),
broken copies of them, the paging client against a loopback replay server (params, errors, 503 with
Retry-After), and ingests through the runner into a real catalog, fresh, repeated and resumed."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from replay import Reply

from papersift.errors import BadInput, SourceError
from papersift.ingest import arxiv_api
from papersift.ingest.arxiv_api import fetch_arxiv_api, parse_arxiv_api
from papersift.ingest.base import Checkpoint
from papersift.ingest.http import PoliteClient
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem

EMPTY = "arxiv-api/api-2026-empty-result-idlist-0000.0000.xml"
ERROR = "arxiv-api/api-2026-error-incorrect-id-format-http400.xml"
AUTHORS34 = "arxiv-api/api-2026-idlist-1707.08567-34-authors-utf8.xml"
OLD_STYLE = "arxiv-api/api-2026-idlist-old-style-id-astro-ph-0601001.xml"
TWO_IDS = "arxiv-api/api-2026-idlist-two-ids-one-invalid.xml"
TESTING = "arxiv-api/api-2026-search-all-testing-10-results.xml"
TRANSFORMER = "arxiv-api/api-2026-search-transformer-cat-cs.LG-5-results.xml"
VERSIONED = "arxiv-api/api-legacy-2016-idlist-versioned-1111.2011v2.xml"
DOI_JREF = "arxiv-api/api-legacy-2016-search-1-result-doi-journalref.xml"
DEL_MAESTRO = "arxiv-api/api-legacy-2016-search-au-del_maestro-10-results.xml"
QUERY = "all:transformer AND cat:cs.LG"


def first_entries(data: bytes, n: int) -> bytes:
    """A real page cut down to its first `n` entries, still well-formed."""
    offset = -1
    for _ in range(n + 1):
        offset = data.index(b"<entry>", offset + 1)
    return data[:offset] + b"</feed>\n"


# --- every recorded payload ----------------------------------------------------------------------------

def test_34_authors_utf8(payload):
    feed = parse_arxiv_api(payload(AUTHORS34))
    assert (feed.total_results, feed.start_index, feed.items_per_page, feed.error) == (1, 0, 100, None)
    [paper] = feed.records
    assert paper.arxiv_id == "1707.08567" and paper.version == 1
    assert paper.title == "Proceedings of Workshop AEW10: Concepts in Information Theory and Communications"
    assert len(paper.authors) == 34
    assert paper.authors[0] == "Kees A. Schouhamer Immink" and paper.authors[-1] == "Hirosuke Yamamoto"
    assert paper.authors[32] == "Dirk Wübben"
    assert paper.categories == ("cs.IT",)
    assert paper.submitted == paper.updated == dt.date(2017, 7, 27)
    assert paper.comment == "44 pages, editors for the proceedings: Yanling Chen and A. J. Han Vinck"
    assert paper.abstract.startswith('The 10th Asia-Europe workshop in "Concepts in Information Theory')
    assert paper.links["pdf"] == "https://arxiv.org/pdf/1707.08567v1"
    assert paper.doi is None and paper.source == "arxiv-api"


def test_old_style_id_with_affiliations(payload):
    [paper] = parse_arxiv_api(payload(OLD_STYLE)).records
    assert paper.arxiv_id == "astro-ph/0601001" and paper.version == 1
    assert paper.title.startswith("Frequency of Hot Jupiters and Very Hot Jupiters from the OGLE-III")
    assert paper.authors == ("Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski")
    assert paper.signals["affiliations"]["B. Scott Gaudi"] == "CfA"
    assert paper.categories == ("astro-ph",)
    assert paper.journal_ref == "ActaAstron.56:1-50,2006"
    assert paper.comment.startswith("62 pages including 16 figures and 9 tables.")
    assert paper.submitted == dt.date(2006, 1, 2)
    assert "V_max<17.5" in paper.abstract  # &lt; unescaped


def test_legacy_versioned_entry(payload):
    feed = parse_arxiv_api(payload(VERSIONED))
    assert (feed.total_results, feed.items_per_page) == (1, 10)
    [paper] = feed.records
    assert paper.arxiv_id == "1111.2011" and paper.version == 2
    assert paper.submitted == dt.date(2011, 11, 8) and paper.updated == dt.date(2012, 4, 2)
    assert paper.title == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    assert paper.abstract.startswith("Theoretical description of anisotropic systems, such as layered superconductors")
    assert paper.authors == ("James M. Murray", "Adrian Del Maestro", "Zlatko Tesanovic")
    assert paper.categories == ("cond-mat.str-el", "cond-mat.stat-mech")
    assert paper.doi == "10.1103/physrevb.85.115117"
    assert paper.journal_ref == "Phys. Rev. B 85, 115117 (2012)"
    assert paper.comment == "8 pages, 3 figures. Published version"
    assert paper.links == {"doi": "https://doi.org/10.1103/physrevb.85.115117",
                           "abs": "http://arxiv.org/abs/1111.2011v2", "pdf": "http://arxiv.org/pdf/1111.2011v2"}


def test_legacy_search_doi_and_journal_ref(payload):
    [paper] = parse_arxiv_api(payload(DOI_JREF)).records
    assert paper.arxiv_id == "cond-mat/0603029"
    assert paper.title == ("From stripe to checkerboard order on the square lattice in the presence of "
                           "quenched disorder")
    assert paper.doi == "10.1103/physrevb.74.024520"
    assert paper.journal_ref == "Phys. Rev. B 74, 024520 (2006)"
    assert paper.categories == ("cond-mat.str-el", "cond-mat.supr-con")


def test_legacy_search_page(payload):
    feed = parse_arxiv_api(payload(DEL_MAESTRO))
    assert (feed.total_results, feed.start_index, feed.items_per_page) == (31, 0, 10)
    assert len(feed.papers) == 10 and feed.papers[0].arxiv_id == "1201.4869"
    assert feed.papers[0].title == "A Luttinger Liquid Core Inside Helium-4 Filled Nanopores"
    assert feed.papers[1].arxiv_id == "cond-mat/0412498"
    assert all(any(a.endswith("Del Maestro") for a in p.authors) for p in feed.papers)
    assert feed.papers[4].authors == ("B. Kulchytskyy", "G. Gervais", "A. Del Maestro")


def test_new_search_pages(payload):
    feed = parse_arxiv_api(payload(TESTING))
    assert (feed.total_results, feed.items_per_page, len(feed.papers)) == (214881, 10, 10)
    first = feed.papers[0]
    assert first.arxiv_id == "2202.12139"
    assert first.title == "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    assert first.categories == ("cs.SE", "cs.LG") and first.doi == "10.1109/icstw55395.2022.00035"
    feed = parse_arxiv_api(payload(TRANSFORMER))
    assert (feed.total_results, len(feed.papers)) == (28946, 5)
    mana = feed.papers[0]
    assert (mana.arxiv_id, mana.title) == ("2606.13677", "Mana: Dexterous Manipulation of Articulated Tools")
    assert mana.categories == ("cs.RO", "cs.AI", "cs.CV", "cs.LG")
    assert mana.authors == ("Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu")
    assert mana.submitted == dt.date(2026, 6, 11)


def test_two_ids_one_invalid_and_empty_result(payload):
    feed = parse_arxiv_api(payload(TWO_IDS))
    assert feed.total_results == 1 and [p.arxiv_id for p in feed.papers] == ["1707.08567"]
    feed = parse_arxiv_api(payload(EMPTY))
    assert (feed.records, feed.total_results, feed.error, feed.broken) == ([], 0, None, None)


def test_error_feed_is_an_error_not_a_paper(payload):
    feed = parse_arxiv_api(payload(ERROR))
    assert feed.error == "incorrect id format for abc" and feed.records == []


def test_primary_category_comes_first(payload):
    data = payload(TRANSFORMER).replace(b'<arxiv:primary_category term="cs.RO"/>',
                                        b'<arxiv:primary_category term="cs.LG"/>', 1)
    assert parse_arxiv_api(data).papers[0].categories == ("cs.LG", "cs.RO", "cs.AI", "cs.CV")


# --- broken copies -------------------------------------------------------------------------------------

def test_truncated_page_keeps_complete_entries(payload):
    data = payload(TESTING)
    feed = parse_arxiv_api(data[: data.index(b"<entry>", data.index(b"2405.13786")) + 300])
    assert [type(r) for r in feed.records] == [Paper, Paper, Problem]
    assert feed.records[-1].position == "entry 3" and "cut-off XML" in feed.records[-1].reason
    assert feed.total_results == 214881 and feed.broken


def test_entry_without_title_and_with_bad_date(payload):
    data = payload(TRANSFORMER).replace(b"<title>Mana: Dexterous Manipulation of Articulated Tools</title>",
                                        b"<title/>", 1)
    data = data.replace(b"<published>2026-06-11T17:12:11Z</published>", b"<published>last Tuesday</published>", 1)
    feed = parse_arxiv_api(data)
    problems = [(r.position, r.reason) for r in feed.records if isinstance(r, Problem)]
    assert problems == [("entry 1 (2606.13677)", "missing title"),
                        ("entry 2 (2606.13591)", "unreadable date 'last Tuesday'")]
    assert len(feed.papers) == 3


def test_garbage_bytes():
    feed = parse_arxiv_api(b"\x00\xff\xfegarbage <<<")
    assert feed.papers == [] and feed.broken and isinstance(feed.records[0], Problem)
    assert "not an Atom feed" in parse_arxiv_api(b"<rss><channel/></rss>").broken


# --- live ----------------------------------------------------------------------------------------------

@pytest.fixture
def client():
    waits: list[float] = []
    with PoliteClient(delay=0.0, sleep=waits.append, backoff=1.0) as c:
        c.slept = waits
        yield c


def params(request) -> dict:
    return {k: v[0] for k, v in request.query.items()}


def test_fetch_pages_with_start_and_max_results(replay_server, client, payload):
    replay_server.add("/api/query", Reply(payload(TRANSFORMER)), Reply(first_entries(payload(TESTING), 5)))
    records = list(fetch_arxiv_api(client, replay_server.url + "/api/query", query=QUERY, max_results=10, page_size=5))
    assert [r for r in records if isinstance(r, Checkpoint)] == [Checkpoint("5", flush=True), Checkpoint("10", flush=True)]
    papers = [r for r in records if isinstance(r, Paper)]
    assert len(papers) == 10 and papers[0].arxiv_id == "2606.13677" and papers[5].arxiv_id == "2202.12139"
    assert isinstance(records[5], Checkpoint)  # after the first page's five papers
    sent = [params(r) for r in replay_server.requests]
    assert [(p["start"], p["max_results"]) for p in sent] == [("0", "5"), ("5", "5")]
    assert sent[0]["search_query"] == QUERY and sent[0]["sortBy"] == "submittedDate"


def test_fetch_stops_at_total_results(replay_server, client, payload):
    replay_server.add("/api/query", Reply(payload(TWO_IDS)))
    records = list(fetch_arxiv_api(client, replay_server.url + "/api/query", id_list=["0808.05394", "1707.08567"]))
    assert [getattr(r, "arxiv_id", r) for r in records] == ["1707.08567", Checkpoint("1", flush=True)]
    [request] = replay_server.requests
    assert params(request)["id_list"] == "0808.05394,1707.08567" and "sortBy" not in params(request)


def test_fetch_stops_at_an_empty_page(replay_server, client, payload):
    replay_server.add("/api/query", Reply(payload(TRANSFORMER)), Reply(payload(EMPTY)))
    records = list(fetch_arxiv_api(client, replay_server.url + "/api/query", query=QUERY, max_results=50, page_size=5))
    assert len(records) == 6 and records[-1] == Checkpoint("5", flush=True)
    assert len(replay_server.requests) == 2


def test_fetch_error_feed_http_400(replay_server, client, payload):
    replay_server.add("/api/query", Reply(payload(ERROR), status=400))
    with pytest.raises(SourceError) as e:
        list(fetch_arxiv_api(client, replay_server.url + "/api/query", id_list=["abc"]))
    assert "incorrect id format for abc" in e.value.message and "ids" in e.value.hint
    assert len(replay_server.requests) == 1  # a 400 is an answer, not something to retry


def test_fetch_retries_503_honouring_retry_after(replay_server, client, payload):
    busy = Reply(payload("oai-pmh/http503-retry-after.html"), status=503, headers={"Retry-After": "10"},
                 content_type="text/html")
    replay_server.add("/api/query", busy, Reply(payload(TWO_IDS)))
    records = list(fetch_arxiv_api(client, replay_server.url + "/api/query", id_list=["0808.05394", "1707.08567"]))
    assert records[0].arxiv_id == "1707.08567"
    assert client.slept == [10.0] and len(replay_server.requests) == 2


def test_fetch_unreadable_page_raises_before_yielding_it(replay_server, client, payload):
    data = payload(TESTING)
    replay_server.add("/api/query", Reply(data[:9000]))
    stream = fetch_arxiv_api(client, replay_server.url + "/api/query", query="all:testing")
    with pytest.raises(SourceError, match="start=0 is unreadable"):
        next(stream)  # the page's three good entries are not yielded: the re-run refetches the page


@pytest.fixture
def live_settings(replay_server, tmp_path, monkeypatch):
    from papersift.settings import load_settings

    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    return load_settings({"arxiv_api_url": replay_server.url + "/api/query",
                          "arxiv_rss_url": replay_server.url + "/rss/", "http_delay": 0.0,
                          "data_dir": str(tmp_path), "config_file": str(tmp_path / "none.toml")})


def serve_two_pages(server, payload):
    server.add("/api/query", Reply(payload(TRANSFORMER)), Reply(first_entries(payload(TESTING), 5)))


def test_run_source_end_to_end(replay_server, payload, store, live_settings):
    spec = arxiv_api.SOURCES[0]
    opts = {"max": "10"}
    key = spec.resume_key(QUERY, opts)
    assert key == "arxiv-api:all:transformer AND cat:cs.LG:10"
    serve_two_pages(replay_server, payload)
    report = run_source(store, spec, QUERY, live_settings, opts=opts)
    assert (report.status, report.seen, report.added, report.skipped) == ("done", 10, 10, 0)
    assert store.count_papers() == 10 and store.get_checkpoint(key) is None
    assert store.get_paper("2606.13677").title == "Mana: Dexterous Manipulation of Articulated Tools"
    assert [(params(r)["start"], params(r)["max_results"]) for r in replay_server.requests] == [("0", "10"), ("5", "5")]
    serve_two_pages(replay_server, payload)
    again = run_source(store, spec, QUERY, live_settings, opts=opts)
    assert (again.added, again.unchanged) == (0, 10) and store.count_papers() == 10


def test_run_source_resumes_at_the_saved_start(replay_server, payload, store, live_settings):
    spec = arxiv_api.SOURCES[0]
    store.upsert_papers([], checkpoint=(spec.resume_key(QUERY, {"max": "10"}), "5"))
    replay_server.add("/api/query", Reply(first_entries(payload(TESTING), 5)))
    report = run_source(store, spec, QUERY, live_settings, opts={"max": "10"})
    assert report.resumed_from == "5" and report.added == 5
    [request] = replay_server.requests
    assert (params(request)["start"], params(request)["max_results"]) == ("5", "5")


def test_open_ids_and_files(replay_server, payload, live_settings, tmp_path):
    spec = arxiv_api.SOURCES[0]
    replay_server.add("/api/query", Reply(payload(TWO_IDS)))
    # a well-formed id that does not exist (the recorded reply holds only 1707.08567) …
    records = list(spec.open("-", live_settings, None, {"ids": "0808.0539, 1707.08567", "max": None}))
    assert records[0].arxiv_id == "1707.08567"
    assert params(replay_server.requests[0])["id_list"] == "0808.0539,1707.08567"
    # … while a malformed one (2008 ids have four-digit numbers) is refused before asking arXiv
    with pytest.raises(BadInput):
        list(spec.open("-", live_settings, None, {"ids": "0808.05394", "max": None}))
    assert spec.resume_key("-", {"ids": "1707.08567", "max": None}) is None

    path = tmp_path / "saved.xml"
    path.write_bytes(payload(DEL_MAESTRO))
    assert spec.resume_key(str(path), {"ids": None, "max": None}) is None
    assert len(list(spec.open(str(path), live_settings, None, {"ids": None, "max": None}))) == 10
    path.write_bytes(payload(ERROR))
    with pytest.raises(SourceError, match="incorrect id format for abc"):
        list(spec.open(str(path), live_settings, None, {"ids": None, "max": None}))


@pytest.mark.parametrize("target, opts", [
    ("-", {"ids": None, "max": None}),
    ("-", {"ids": "1707.08567,abc", "max": None}),
    ("cat:cs.CL", {"ids": None, "max": "lots"}),
    ("cat:cs.CL", {"ids": None, "max": "0"}),
])
def test_bad_options(target, opts, settings):
    with pytest.raises(BadInput):
        list(arxiv_api.SOURCES[0].open(target, settings, None, opts))
