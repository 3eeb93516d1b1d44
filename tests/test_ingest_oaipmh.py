"""arXiv OAI-PMH: the parser on real recorded replies (arXivRaw, arXiv, oai_dc, errors); broken copies of
them (cut off, a record without title or id, a bad date, a deleted header, garbage); the live harvester
against a loopback replay server (paging, Retry-After, cut-off replies, OAI errors); and whole runs into
a real catalog, including resuming an interrupted harvest from its saved resumption token."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from replay import Reply

from papersift.errors import BadInput, SourceError
from papersift.ingest import oaipmh
from papersift.ingest.http import PoliteClient
from papersift.ingest.oaipmh import SOURCES, fetch_oai, parse_oai_page, resume_key, split_raw_authors
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem
from papersift.settings import load_settings

RAW_LIST = "oai-pmh/arxivraw-listrecords-resumptiontoken-2015.xml"
RAW_GET = "oai-pmh/arxivraw-getrecord-2015.xml"
ARXIV_LIST = "oai-pmh/arxiv-prefix-listrecords-2018.xml"
ARXIV_GET = "oai-pmh/arxiv-prefix-getrecord-2018.xml"
DC_LIST = "oai-pmh/oai_dc-listrecords-set-cs-resumptiontoken-2024.xml"
RAW_IDS = ["0704.0471", "0704.0716", "0704.0874", "0704.1109", "0704.1114", "0704.1586"]
SPEC = SOURCES[0]


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def by_id(page, arxiv_id: str) -> Paper:
    return next(p for p in page.papers if p.arxiv_id == arxiv_id)


def final_page(data: bytes) -> bytes:
    """A real page made into the last one: arXiv ends a list with an empty resumptionToken element."""
    return re.sub(rb"<resumptionToken([^>]*)>[^<]*</resumptionToken>", rb"<resumptionToken\1></resumptionToken>", data)


def as_list_records(data: bytes) -> bytes:
    """A real GetRecord reply as the one-record last page of a ListRecords harvest."""
    return data.replace(b"<GetRecord>", b"<ListRecords>").replace(b"</GetRecord>", b"</ListRecords>")


# --- real replies -------------------------------------------------------------------------------------

def test_arxivraw_list_records(payload):
    page = parse_oai_page(payload(RAW_LIST))
    assert page.error is None and page.broken is None and page.verb == "ListRecords"
    assert [p.arxiv_id for p in page.records] == RAW_IDS
    assert page.resumption_token == "726959|1001" and page.complete_list_size == 58011
    assert all(p.source == "oai" for p in page.papers)

    four = by_id(page, "0704.0716")  # v1..v4 history: v1 date is submitted, v4's is updated
    assert (four.submitted, four.updated, four.version) == (d("2007-04-05"), d("2008-11-14"), 4)
    assert four.categories == ("math-ph", "math.MP") and four.primary_category == "math-ph"
    assert four.signals["classes"] == ["05A15", "05A16"]  # msc-class
    assert four.journal_ref == ("Polygons, polyominoes and polycubes, 247-299, Lecture Notes in Phys., 775, "
                                "Springer, Dordrecht, 2009")
    assert four.comment.startswith("54 pages, 2 figures; v2 updated and slightly expanded; v3 changes in some")
    assert four.signals["oai_datestamp"] == "2014-12-22"
    assert four.signals["oai_sets"] == ["math", "physics:math-ph"]

    three = by_id(page, "0704.0874")
    assert (three.submitted, three.updated, three.version) == (d("2007-04-06"), d("2014-11-20"), 3)
    assert three.title == "Higher ramification and varieties of secant divisors on the generic curve"

    two_dois = by_id(page, "0704.0471")  # <doi> holds the paper's DOI and its erratum's
    assert two_dois.doi == "10.1103/physrevc.76.024606"
    assert two_dois.signals["dois"] == ["10.1103/physrevc.76.024606", "10.1103/physrevc.76.039902"]
    assert two_dois.links["doi"] == "https://doi.org/10.1103/physrevc.76.024606"
    assert two_dois.authors == ("D.V. Shetty", "S.J. Yennello", "G.A. Souliotis")  # "…, and …"
    assert two_dois.categories == ("nucl-ex", "nucl-th")
    assert (two_dois.submitted, two_dois.updated, two_dois.version) == (d("2007-04-03"), d("2007-04-03"), 1)
    assert two_dois.title == ("Density dependence of the symmetry energy and the nuclear equation of state: "
                              "A Dynamical and Statistical model perspective")
    assert 'rules out an extremely " stiff " and " soft " form' in two_dois.abstract

    assert by_id(page, "0704.1109").authors == ("Valeria M. Rosa", "Patricio S. letelier")
    math = by_id(page, "0704.1586")  # LaTeX math kept as is
    assert math.title == "Core excitation in the elastic scattering and breakup of $^{11}$Be on protons"
    assert math.abstract.startswith("The elastic scattering and breakup of $^{11}$Be from a proton target")
    assert math.signals["dois"][1] == "10.1103/physrev.c77.049901"


def test_arxivraw_get_record(payload):
    page = parse_oai_page(payload(RAW_GET))
    assert page.verb == "GetRecord" and page.resumption_token is None
    [paper] = page.records
    assert paper.arxiv_id == "1302.2146" and paper.version == 2
    assert (paper.submitted, paper.updated) == (d("2013-02-08"), d("2013-04-02"))
    assert paper.title == "The Same-Sign Dilepton Signature of RPV/MFV SUSY"
    assert paper.authors == ("Joshua Berger", "Maxim Perelstein", "Michael Saelim", "Philip Tanedo")
    assert paper.categories == ("hep-ph", "hep-ex")  # primary first, as listed (not alphabetical)
    assert paper.comment == "18 pages, 6 figures; v2: References added"
    assert paper.signals["oai_sets"] == ["physics:hep-ex", "physics:hep-ph"]
    assert paper.signals["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    assert paper.doi is None and paper.abstract.endswith("TeV LHC with a 100 fb^-1 data set.")


def test_arxiv_prefix_list_records(payload):
    page = parse_oai_page(payload(ARXIV_LIST))
    assert [p.arxiv_id for p in page.records] == ["1412.8544", "hep-th/9504118"]
    assert page.resumption_token is None and page.complete_list_size is None

    ks = by_id(page, "1412.8544")
    assert ks.authors == ("Sander Uijlen", "Bas Westerbaan")
    assert ks.signals["affiliations"] == {"Sander Uijlen": "Radboud Universiteit",
                                          "Bas Westerbaan": "Radboud Universiteit"}
    assert ks.submitted == d("2014-12-29") and ks.signals["oai_created"] == "2014-12-29"
    assert ks.doi == "10.4204/eptcs.172.11" and ks.journal_ref == "EPTCS 172, 2014, pp. 154-164"
    assert ks.categories == ("cs.DM",) and ks.comment == "In Proceedings QPL 2014, arXiv:1412.8102"
    assert ks.version is None  # the arXiv format has no version history

    old = by_id(page, "hep-th/9504118")  # old-style id
    assert old.title == "Discrete Mathematics and Physics on the Planck-Scale"
    assert old.authors == ("M. Requardt",) and old.categories == ("hep-th",)
    assert old.submitted == d("1995-04-24") and old.signals["report_no"] == "GOET-TP 101/95"
    assert old.signals["oai_sets"] == ["physics:hep-th"] and old.signals["oai_datestamp"] == "2015-01-03"
    assert "'{\\it cellular network}'" in old.abstract  # TeX kept as is
    assert 'the "strength" of the bonds' in old.abstract


def test_arxiv_prefix_created_is_only_trusted_when_it_matches_the_id(payload):
    data = payload(ARXIV_GET)
    [paper] = parse_oai_page(data).records
    assert paper.arxiv_id == "1412.8544" and paper.submitted == d("2014-12-29")
    [late] = parse_oai_page(data.replace(b"<created>2014-12-29</created>", b"<created>2016-03-01</created>")).records
    assert late.submitted is None and late.signals["oai_created"] == "2016-03-01"


def test_oai_dc_list_records(payload):
    page = parse_oai_page(payload(DC_LIST))
    assert [p.arxiv_id for p in page.records] == ["1303.2033", "2401.14034", "2401.14036", "2401.14038",
                                                  "2401.14040"]
    assert page.resumption_token == "6960524|1001" and page.complete_list_size == 1162

    revised = by_id(page, "1303.2033")  # first dc:date is v1, the last the latest version
    assert (revised.submitted, revised.updated) == (d("2013-03-08"), d("2024-01-23"))
    assert revised.authors == ("Vilnis Liepins",)
    assert revised.comment == "32 pages, 9 figures"
    assert revised.abstract.startswith("This summary of the doctoral thesis is created")
    assert "Comment:" not in revised.abstract
    assert revised.signals["subjects"] == ["Computer Science - Data Structures and Algorithms",
                                           "Computer Science - Information Theory",
                                           "Mathematics - Numerical Analysis"]
    assert revised.signals["oai_datestamp"] == "2024-01-25" and revised.signals["oai_sets"] == ["cs"]

    six = by_id(page, "2401.14034")
    assert six.authors == ("Chuankun Li", "Shuai Li", "Yanbo Gao", "Ping Chen", "Jian Li", "Wanqing Li")
    assert six.submitted == six.updated == d("2024-01-25") and six.comment is None
    assert by_id(page, "2401.14040").comment == "Accepted to the Findings of EACL 2024"
    assert by_id(page, "2401.14040").title == "(Chat)GPT v BERT: Dawn of Justice for Semantic Change Detection"


@pytest.mark.parametrize("name, code, words", [
    ("badArgument", "badArgument", "illegal argument 'identifier'"),
    ("badResumptionToken", "badResumptionToken", "resumptionToken supplied is illegal"),
    ("badVerb", "badVerb", "Verb 'wah' not implemented"),
    ("idDoesNotExist", "idDoesNotExist", "0813.2274"),
    ("noRecordsMatch", "noRecordsMatch", "The setSpec was 'moo'"),
])
def test_error_replies(payload, name, code, words):
    page = parse_oai_page(payload(f"oai-pmh/error-{name}.xml"))
    assert page.error[0] == code and words in page.error[1]
    assert page.records == [] and page.broken is None


def test_list_identifiers_has_no_records(payload, tmp_path):
    data = payload("oai-pmh/listidentifiers-arxiv-2018.xml")
    page = parse_oai_page(data)
    assert page.verb == "ListIdentifiers" and page.records == [] and page.broken is None
    path = tmp_path / "ids.xml"
    path.write_bytes(data)
    with pytest.raises(SourceError, match="ListIdentifiers"):
        list(SPEC.open(str(path), None, None, {}))


def test_split_raw_authors():
    assert split_raw_authors("A. One (Univ X (Dept Y)), B. Two, Jr., and C. Bal\\'azs") == (
        "A. One", "B. Two Jr.", "C. Balázs")
    assert split_raw_authors("ATLAS Collaboration") == ("ATLAS Collaboration",)
    assert split_raw_authors(None) == ()


# --- broken copies of real replies --------------------------------------------------------------------

def test_truncated_at_many_offsets_keeps_every_complete_record(payload):
    data = payload(RAW_LIST)
    full = parse_oai_page(data).records
    for cut in list(range(0, len(data), 613)) + [data.rindex(b"</record>") + 9, len(data) - 12]:
        page = parse_oai_page(data[:cut])
        complete = data[:cut].count(b"</record>")
        assert page.records[:-1] == full[:complete], cut
        problem = page.records[-1]
        assert isinstance(problem, Problem) and page.broken, cut
        assert problem.position.startswith(f"record {complete + 1}"), cut
        assert sum(isinstance(r, Problem) for r in page.records) == 1


def test_truncated_problem_says_where(payload):
    data = payload(RAW_LIST)
    cut = data.index(b"<id>0704.1114</id>")
    page = parse_oai_page(data[:cut])
    assert [p.arxiv_id for p in page.papers] == RAW_IDS[:4]
    assert page.records[-1].position == "record 5 (after oai:arXiv.org:0704.1109)"
    assert "breaks off" in page.records[-1].reason and "4 records read" in page.records[-1].reason


def test_record_without_title(payload):
    data = payload(RAW_LIST)
    title = re.search(rb"<title>Higher ramification.*?</title>", data, re.DOTALL).group()
    page = parse_oai_page(data.replace(title, b""))
    assert page.records[2] == Problem("oai", "record 3 (oai:arXiv.org:0704.0874)", "0704.0874: missing title")
    assert [p.arxiv_id for p in page.papers] == RAW_IDS[:2] + RAW_IDS[3:]
    assert page.resumption_token == "726959|1001"


def test_record_without_id(payload):
    data = payload(RAW_LIST)
    no_id = data.replace(b"<id>0704.1109</id>", b"")
    assert parse_oai_page(no_id).records[3].arxiv_id == "0704.1109"  # the header's identifier stands in
    neither = no_id.replace(b"<identifier>oai:arXiv.org:0704.1109</identifier>", b"")
    page = parse_oai_page(neither)
    assert page.records[3] == Problem("oai", "record 4", "missing or malformed arXiv id None")
    assert len(page.papers) == 5


def test_record_with_bad_date(payload):
    data = payload(RAW_LIST).replace(b"Fri, 6 Apr 2007 11:07:01 GMT", b"sometime in April")
    page = parse_oai_page(data)
    problem = page.records[2]
    assert isinstance(problem, Problem) and problem.position == "record 3 (oai:arXiv.org:0704.0874)"
    assert "unreadable date 'sometime in April'" in problem.reason
    assert len(page.papers) == 5
    bad_stamp = payload(RAW_GET).replace(b"<datestamp>2013-04-03</datestamp>", b"<datestamp>soon</datestamp>")
    assert "unreadable date 'soon'" in parse_oai_page(bad_stamp).records[0].reason


def test_deleted_record(payload):
    data = payload(RAW_LIST)
    first = re.search(rb"<record>.*?</record>", data, re.DOTALL).group()
    deleted = re.sub(rb"<metadata>.*</metadata>", b"", first.replace(b"<header>", b'<header status="deleted">'),
                     flags=re.DOTALL)
    page = parse_oai_page(data.replace(first, deleted))
    assert page.records[0] == Problem("oai", "record 1 (oai:arXiv.org:0704.0471)", "deleted upstream")
    assert [p.arxiv_id for p in page.papers] == RAW_IDS[1:]


@pytest.mark.parametrize("data, words", [
    (b"\x00\xffnot xml at all", "not XML"),
    (b"", "empty reply"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'></feed>", "not an OAI-PMH reply (the document is <feed>)"),
    ((b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
      b'<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">&b;</OAI-PMH>'), "refused XML"),
])
def test_garbage(data, words):
    page = parse_oai_page(data)
    assert page.papers == [] and words in page.broken
    assert len(page.records) == 1 and words in page.records[0].reason


def test_html_rate_limit_page_is_not_oai(payload):
    page = parse_oai_page(payload("oai-pmh/http503-retry-after.html"))
    assert page.broken == "not an OAI-PMH reply (the document is <html>)" and page.papers == []


# --- the live harvester --------------------------------------------------------------------------------

@pytest.fixture
def client():
    waits: list[float] = []
    with PoliteClient(delay=0.0, retries=3, sleep=waits.append) as c:
        yield c


def test_two_pages_with_params(replay_server, payload, client):
    replay_server.add("/oai", Reply(payload(DC_LIST)), Reply(final_page(payload(DC_LIST))))
    records = list(fetch_oai(client, replay_server.url + "/oai", metadata_prefix="oai_dc",
                             from_date="2024-01-25", until_date="2024-01-26", set_spec="cs"))
    checkpoints = [r.position for r in records if isinstance(r, oaipmh.Checkpoint)]
    assert checkpoints == ["6960524|1001", ""]
    assert all(r.flush for r in records if isinstance(r, oaipmh.Checkpoint))
    assert sum(isinstance(r, Paper) for r in records) == 10
    assert isinstance(records[5], oaipmh.Checkpoint)  # the first page's papers, then its checkpoint
    first, second = replay_server.requests
    assert first.query == {"verb": ["ListRecords"], "metadataPrefix": ["oai_dc"], "from": ["2024-01-25"],
                           "until": ["2024-01-26"], "set": ["cs"]}
    assert second.query == {"verb": ["ListRecords"], "resumptionToken": ["6960524|1001"]}


def test_start_token_resumes(replay_server, payload, client):
    replay_server.add("/oai", Reply(final_page(payload(RAW_LIST))))
    records = list(fetch_oai(client, replay_server.url + "/oai", start_token="726959|1001", set_spec="cs"))
    assert [r.arxiv_id for r in records if isinstance(r, Paper)] == RAW_IDS
    assert replay_server.requests[0].query == {"verb": ["ListRecords"], "resumptionToken": ["726959|1001"]}


def test_503_retry_after_is_honoured(replay_server, payload, client):
    replay_server.add("/oai",
                      Reply(payload("oai-pmh/http503-retry-after.html"), status=503, headers={"Retry-After": "10"},
                            content_type="text/html"),
                      Reply(payload(ARXIV_LIST)))
    records = list(fetch_oai(client, replay_server.url + "/oai", metadata_prefix="arXiv",
                             from_date="2015-01-01", until_date="2015-01-03"))
    assert [r.arxiv_id for r in records if isinstance(r, Paper)] == ["1412.8544", "hep-th/9504118"]
    assert client.waits == [10.0]
    assert len(replay_server.requests) == 2
    assert replay_server.requests[1].query == replay_server.requests[0].query


def test_no_records_match_is_an_empty_harvest(replay_server, payload, client):
    replay_server.add("/oai", Reply(payload("oai-pmh/error-noRecordsMatch.xml")))
    assert list(fetch_oai(client, replay_server.url + "/oai", from_date="2024-01-27", until_date="2024-01-28")) == []


def test_bad_resumption_token_raises(replay_server, payload, client):
    replay_server.add("/oai", Reply(payload("oai-pmh/error-badResumptionToken.xml")))
    with pytest.raises(SourceError, match="badResumptionToken") as caught:
        list(fetch_oai(client, replay_server.url + "/oai", start_token="3"))
    assert "--fresh" in caught.value.hint


def test_bad_argument_raises(replay_server, payload, client):
    replay_server.add("/oai", Reply(payload("oai-pmh/error-badArgument.xml")))
    with pytest.raises(SourceError, match="illegal argument 'identifier'") as caught:
        list(fetch_oai(client, replay_server.url + "/oai"))
    assert "--from" in caught.value.hint


def test_reply_cut_off_mid_transfer_is_retried(replay_server, payload, client):
    data = payload(RAW_LIST)
    replay_server.add("/oai", Reply(data, truncate_at=4000), Reply(final_page(data)))
    records = list(fetch_oai(client, replay_server.url + "/oai"))
    assert [r.arxiv_id for r in records if isinstance(r, Paper)] == RAW_IDS
    assert not any(isinstance(r, Problem) for r in records)
    assert len(replay_server.requests) == 2 and client.waits == [5.0]  # the client's backoff


def test_unreadable_page_is_refetched(replay_server, payload, client):
    data = payload(RAW_LIST)  # a complete HTTP reply whose XML breaks off (a proxy cut it)
    replay_server.add("/oai", Reply(data[:5000]), Reply(final_page(data)))
    records = list(fetch_oai(client, replay_server.url + "/oai"))
    assert [r.arxiv_id for r in records if isinstance(r, Paper)] == RAW_IDS
    assert not any(isinstance(r, Problem) for r in records) and len(replay_server.requests) == 2


def test_always_unreadable_page_gives_up(replay_server, payload, client):
    replay_server.add("/oai", Reply(payload(RAW_LIST)[:5000]))
    with pytest.raises(SourceError, match="unreadable page 4 times"):
        list(fetch_oai(client, replay_server.url + "/oai"))
    assert len(replay_server.requests) == 4


# --- the source: options, files, runs into a real catalog ----------------------------------------------

def test_options_and_resume_key(tmp_path):
    opts = {"from": "2024-01-25", "until": "2024-01-26", "prefix": "oai_dc", "set": None}
    assert resume_key("cs", opts) == "oai:oai_dc:cs:2024-01-25:2024-01-26"
    assert resume_key("all", {}) == "oai:arXivRaw:all::"
    assert resume_key("all", {"set": "physics:hep-th", "prefix": "arxiv"}) == "oai:arXiv:physics:hep-th::"
    path = tmp_path / "page.xml"
    path.write_bytes(b"<x/>")
    assert resume_key(str(path), {}) is None
    for bad in ({"from": "25.01.2024"}, {"until": "2024-13-01"}, {"prefix": "marc"},
                {"from": "2024-02-01", "until": "2024-01-01"}):
        with pytest.raises(BadInput):
            resume_key("cs", bad)
    with pytest.raises(BadInput, match="not an OAI set"):
        resume_key("cs.LG", {})
    with pytest.raises(BadInput, match="two sets"):
        resume_key("math", {"set": "cs"})
    assert "papersift ingest oai cs --from" in SPEC.example
    assert [name for name, _ in SPEC.options] == ["from", "until", "set", "prefix"]


def test_saved_file_ingests_offline(store, settings, payload, tmp_path):
    path = tmp_path / "listrecords.xml"
    path.write_bytes(payload(ARXIV_LIST))
    report = run_source(store, SPEC, str(path), settings)
    assert (report.seen, report.added, report.skipped) == (2, 2, 0)
    assert store.get_paper("hep-th/9504118").submitted == d("1995-04-24")
    cut = tmp_path / "cut.xml"
    cut.write_bytes(payload(RAW_LIST)[:7000])  # three whole records, then the cut
    report = run_source(store, SPEC, str(cut), settings)
    assert (report.added, report.skipped) == (3, 1) and "breaks off" in report.problems[0].reason
    html = tmp_path / "rate.xml"
    html.write_bytes(payload("oai-pmh/http503-retry-after.html"))
    with pytest.raises(SourceError, match="not an OAI-PMH reply"):
        run_source(store, SPEC, str(html), settings)


@pytest.fixture
def live_settings(tmp_path, replay_server):
    return load_settings({"oai_url": replay_server.url + "/oai", "http_delay": 0.0, "data_dir": str(tmp_path),
                          "config_file": str(tmp_path / "none.toml")}, environ={})


@pytest.fixture
def waits(monkeypatch):
    """Every pause the source's client takes, recorded instead of slept."""
    recorded: list[float] = []

    class RecordingClient(PoliteClient):
        def __init__(self, **kwargs):
            super().__init__(**{**kwargs, "sleep": recorded.append})

    monkeypatch.setattr(oaipmh, "PoliteClient", RecordingClient)
    return recorded


def test_harvest_into_catalog_twice(store, live_settings, replay_server, payload, waits):
    pages = (Reply(payload(RAW_LIST)), Reply(final_page(as_list_records(payload(RAW_GET)))))
    opts = {"from": "2014-10-01"}
    replay_server.add("/oai", *pages)
    report = run_source(store, SPEC, "all", live_settings, opts=opts)
    assert (report.seen, report.added, report.skipped, report.status) == (7, 7, 0, "done")
    assert store.count_papers() == 7
    four = store.get_paper("0704.0716")
    assert (four.version, four.submitted, four.updated) == (4, d("2007-04-05"), d("2008-11-14"))
    assert store.get_paper("1302.2146").categories == ("hep-ph", "hep-ex")
    assert store.get_checkpoint(resume_key("all", opts)) is None  # a finished harvest leaves no resume point
    assert replay_server.requests[0].query == {"verb": ["ListRecords"], "metadataPrefix": ["arXivRaw"],
                                               "from": ["2014-10-01"]}

    replay_server.add("/oai", *pages)
    again = run_source(store, SPEC, "all", live_settings, opts=opts)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 7)
    assert store.count_papers() == 7 and waits == []


def test_interrupted_harvest_resumes_from_saved_token(store, live_settings, replay_server, payload, waits):
    opts = {"from": "2014-10-01", "set": "physics"}
    key = resume_key("all", opts)
    replay_server.add("/oai", Reply(payload(RAW_LIST)), Reply("upstream broke", status=500, content_type="text/plain"))
    with pytest.raises(SourceError, match="HTTP 500"):
        run_source(store, SPEC, "all", live_settings, opts=opts)
    assert len(replay_server.requests) == 1 + 1 + live_settings.http_retries  # page 1, then 500s retried
    assert waits == [5.0, 10.0, 20.0, 40.0, 80.0]  # the client's backoff, recorded, not slept
    assert store.count_papers() == 6  # page 1 was committed with its token
    assert store.get_checkpoint(key) == "726959|1001"

    replay_server.requests.clear()
    replay_server.add("/oai", Reply(final_page(as_list_records(payload(RAW_GET)))))
    report = run_source(store, SPEC, "all", live_settings, opts=opts)
    assert report.resumed_from == "726959|1001"
    assert replay_server.requests[0].query == {"verb": ["ListRecords"], "resumptionToken": ["726959|1001"]}
    assert len(replay_server.requests) == 1
    assert (report.added, report.status) == (1, "done")
    assert store.count_papers() == 7 and store.get_checkpoint(key) is None
