"""RSS 2.0 and Atom 1.0 feeds, on real arXiv papers from the bundled sample and on hostile ones built
here (markup, CDATA terminators, control characters, non-BMP text, no authors, no date). Every feed is
parsed back with ElementTree, and with feedparser where it is installed, and compared field by field."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from importlib import resources

import pytest

from papersift.ingest.jsonl import SAMPLE_FILE, parse_arxiv_daily_record
from papersift.models import Paper
from papersift.web.feeds import FEED_TYPES, FeedItem, render_atom, render_rss

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
SITE = "https://papers.example.org"
UTC = dt.timezone.utc
# a feed date outside UTC, so that a missing conversion shows
UPDATED = dt.datetime(2026, 6, 16, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
UPDATED_UTC = dt.datetime(2026, 6, 16, 7, 30, 15, tzinfo=UTC)

# real sample papers: `<`/`>` in the abstract, `&` in the abstract, non-ASCII authors, a LaTeX \cite
REAL_IDS = ["2606.18246", "2606.18062", "2606.14420", "2008.03186", "2606.17702"]

HOSTILE_TITLE = "<b>&\"'</b> Bold]]> & \x07bell\x00 𝔼[X] 😀"
HOSTILE_TITLE_OUT = "<b>&\"'</b> Bold]]> & bell 𝔼[X] 😀"
HOSTILE_ABSTRACT = ("<script>alert(1)</script> ]]> <![CDATA[x]]> &amp; \x00\x01\x08\x0b\x0c\x0e\x1f\ufffe\ud800end"
                    " line1\r\nline2\rline3 \U0001d53c 😀")
HOSTILE_ABSTRACT_OUT = "<script>alert(1)</script> ]]> <![CDATA[x]]> &amp; end line1\nline2\nline3 𝔼 😀"


def _sample_papers() -> dict[str, Paper]:
    out = {}
    with resources.as_file(resources.files("papersift") / "data" / SAMPLE_FILE) as path, gzip.open(path, "rt") as f:
        for line in f:
            obj = json.loads(line)
            if obj["id"] in REAL_IDS:
                out[obj["id"]] = parse_arxiv_daily_record(obj, "sample")
    return out


@pytest.fixture(scope="module")
def real() -> list[Paper]:
    papers = _sample_papers()
    assert sorted(papers) == sorted(REAL_IDS) and all(isinstance(p, Paper) for p in papers.values())
    return [papers[i] for i in REAL_IDS]


HOSTILE = Paper(
    title=HOSTILE_TITLE, abstract=HOSTILE_ABSTRACT, authors=("Zoë <O'Brien> & Co", "𝔼ve 😀\x0b"),
    categories=("cs.LG", "a&b<c>"), doi="10.1000/x<y>", links={"abs": f"{SITE}/x?a=1&b=<2>", "pdf": "https://x.org/p.pdf"},
)
BARE = Paper(title="😀 only a title")  # no authors, categories, abstract, date, id or links
SUBMITTED_ONLY = Paper(title="Submitted only", arxiv_id="2401.00001", submitted=dt.date(2024, 1, 2), updated=dt.date(2024, 3, 4))
UPDATED_ONLY = Paper(title="Updated only", arxiv_id="2401.00002", updated=dt.date(2024, 3, 4))


def _items(papers) -> list[FeedItem]:
    return [FeedItem(p, f"{SITE}/paper/{p.arxiv_id or i}", reason=f"{i} <upvotes> & more", score=float(i))
            for i, p in enumerate(papers)]


def _expected(p: Paper) -> tuple:
    """(title, authors, categories, abstract) as a reader must get them back."""
    if p is HOSTILE:
        return HOSTILE_TITLE_OUT, ("Zoë <O'Brien> & Co", "𝔼ve 😀"), p.categories, HOSTILE_ABSTRACT_OUT
    return p.title, p.authors, p.categories, p.abstract


def _expected_date(p: Paper) -> dt.datetime:
    d = p.listed or p.submitted or p.updated
    return dt.datetime(d.year, d.month, d.day, tzinfo=UTC) if d else UPDATED_UTC


class _Html(HTMLParser):
    """What a feed reader would make of an HTML description: its tags, link targets and text."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.hrefs, self.text = [], [], ""
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.hrefs += [v for k, v in attrs if k == "href"]

    def handle_data(self, data):
        self.text += data


def _check_html(source: str, item: FeedItem, abstract: str) -> None:
    body = _Html(source)
    assert set(body.tags) <= {"p", "em", "a"}  # no <script>, <b>, … from the paper's text
    assert abstract in body.text and item.reason in body.text
    assert body.hrefs == [u for u in (item.paper.abs_url, item.paper.pdf_url) if u]


@pytest.fixture(scope="module")
def papers(real) -> list[Paper]:
    return [*real, HOSTILE, BARE, SUBMITTED_ONLY, UPDATED_ONLY]


def test_rss_round_trips_every_field(papers):
    items = _items(papers)
    data = render_rss("Trending <today> & \x00", f"{SITE}/trending", f"{SITE}/trending.rss", "Top 'papers'", items, UPDATED)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    rss = ET.fromstring(data)
    assert rss.tag == "rss" and rss.get("version") == "2.0"
    channel = rss.find("channel")
    assert channel.findtext("title") == "Trending <today> & "
    assert channel.findtext("link") == f"{SITE}/trending" and channel.findtext("description") == "Top 'papers'"
    self_link = channel.find(f"{ATOM}link")
    assert (self_link.get("rel"), self_link.get("href"), self_link.get("type")) == ("self", f"{SITE}/trending.rss",
                                                                                  "application/rss+xml")
    assert email.utils.parsedate_to_datetime(channel.findtext("lastBuildDate")) == UPDATED_UTC
    out = channel.findall("item")
    assert len(out) == len(items)
    for item, el in zip(items, out):
        title, authors, categories, abstract = _expected(item.paper)
        assert el.findtext("title") == title
        assert el.findtext("link") == item.link
        assert el.findtext("guid") == item.link and el.find("guid").get("isPermaLink") == "true"
        assert tuple(c.text for c in el.findall(f"{DC}creator")) == authors
        assert tuple(c.text for c in el.findall("category")) == categories
        assert email.utils.parsedate_to_datetime(el.findtext("pubDate")) == _expected_date(item.paper)
        _check_html(el.findtext("description"), item, abstract)


def test_atom_round_trips_every_field(papers):
    items = _items(papers)
    data = render_atom("Search: \"<x>\"", f"{SITE}/search?q=x&y", f"{SITE}/search.atom?q=x&y", "sub & <s>", items, UPDATED)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    feed = ET.fromstring(data)
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == "Search: \"<x>\"" and feed.findtext(f"{ATOM}subtitle") == "sub & <s>"
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert links == {"alternate": f"{SITE}/search?q=x&y", "self": f"{SITE}/search.atom?q=x&y"}
    assert feed.findtext(f"{ATOM}id") == f"{SITE}/search.atom?q=x&y"
    assert dt.datetime.fromisoformat(feed.findtext(f"{ATOM}updated")) == UPDATED_UTC
    assert feed.findtext(f"{ATOM}author/{ATOM}name")  # entries without authors need the feed's
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == len(items)
    for item, el in zip(items, entries):
        title, authors, categories, abstract = _expected(item.paper)
        assert el.findtext(f"{ATOM}title") == title and el.find(f"{ATOM}title").get("type") == "text"
        assert el.findtext(f"{ATOM}id") == item.link
        rels = [(link.get("rel"), link.get("href")) for link in el.findall(f"{ATOM}link")]
        assert rels == [("alternate", item.link)] + [("related", u) for u in (item.paper.abs_url, item.paper.pdf_url) if u]
        assert tuple(a.text for a in el.findall(f"{ATOM}author/{ATOM}name")) == authors
        assert tuple(c.get("term") for c in el.findall(f"{ATOM}category")) == categories
        published = dt.datetime.fromisoformat(el.findtext(f"{ATOM}published"))
        assert published == _expected_date(item.paper)
        assert dt.datetime.fromisoformat(el.findtext(f"{ATOM}updated")) >= published
        assert el.findtext(f"{ATOM}summary") == (abstract or None)
        assert el.find(f"{ATOM}content").get("type") == "html"
        _check_html(el.findtext(f"{ATOM}content"), item, abstract)


def test_dates_in_the_formats_each_spec_asks_for():
    items = _items([SUBMITTED_ONLY, UPDATED_ONLY, BARE])
    rss = ET.fromstring(render_rss("t", SITE, SITE, "d", items, UPDATED))
    assert [e.findtext("pubDate") for e in rss.iter("item")] == [
        "Tue, 02 Jan 2024 00:00:00 GMT", "Mon, 04 Mar 2024 00:00:00 GMT", "Tue, 16 Jun 2026 07:30:15 GMT"]
    atom = ET.fromstring(render_atom("t", SITE, SITE, "s", items, UPDATED, feed_id="tag:example.org,2026:trending"))
    assert atom.findtext(f"{ATOM}id") == "tag:example.org,2026:trending"
    assert atom.findtext(f"{ATOM}updated") == "2026-06-16T07:30:15Z"
    entries = atom.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}published") for e in entries] == ["2024-01-02T00:00:00Z", "2024-03-04T00:00:00Z",
                                                                 "2026-06-16T07:30:15Z"]
    # the latest version's date, not the submission date
    assert entries[0].findtext(f"{ATOM}updated") == "2024-03-04T00:00:00Z"


@pytest.fixture
def far_from_utc(monkeypatch):
    """A local time zone that is not UTC, so that treating naive times as local time shows."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_listed_wins_over_submitted_and_naive_times_are_utc(far_from_utc):
    paper = Paper(title="x", listed=dt.date(2026, 6, 15), submitted=dt.date(2026, 6, 10), updated=dt.date(2026, 6, 12))
    rss = ET.fromstring(render_rss("t", SITE, SITE, "d", _items([paper]), dt.datetime(2026, 6, 16, 8, 0)))
    assert rss.findtext("channel/item/pubDate") == "Mon, 15 Jun 2026 00:00:00 GMT"
    assert rss.findtext("channel/lastBuildDate") == "Tue, 16 Jun 2026 08:00:00 GMT"


def test_output_is_utf8_and_free_of_illegal_characters(papers):
    for data in (render_rss("t", SITE, SITE, "d", _items(papers), UPDATED),
                 render_atom("t", SITE, SITE, "s", _items(papers), UPDATED)):
        text = data.decode("utf-8")  # strict: a lone surrogate would not have encoded
        assert not any(c in text for c in "\x00\x01\x07\x08\x0b\x0c\x0e\x1f\ufffe\r")
        assert "𝔼" in text and "😀" in text and "<script" not in text and "<b>" not in text
        assert text.count("xmlns:dc=") <= 1 and text.count('xmlns="http://www.w3.org/2005/Atom"') <= 1


def test_order_is_the_callers(real):
    forward, backward = _items(real), _items(real)[::-1]
    for render, path in ((render_rss, "channel/item/link"), (render_atom, f"{ATOM}entry/{ATOM}id")):
        for items in (forward, backward):
            root = ET.fromstring(render("t", SITE, SITE, "d", items, UPDATED))
            assert [e.text for e in root.findall(path)] == [i.link for i in items]


def test_empty_list_gives_a_valid_feed():
    rss = ET.fromstring(render_rss("Nothing yet", SITE, f"{SITE}/f.rss", "d", [], UPDATED))
    assert rss.find("channel/title").text == "Nothing yet" and rss.findall("channel/item") == []
    atom = ET.fromstring(render_atom("Nothing yet", SITE, f"{SITE}/f.atom", "", [], UPDATED))
    assert atom.findall(f"{ATOM}entry") == [] and atom.find(f"{ATOM}subtitle") is None
    assert atom.findtext(f"{ATOM}id") == f"{SITE}/f.atom" and atom.findtext(f"{ATOM}updated")


def test_feed_types():
    assert FEED_TYPES == {"rss": "application/rss+xml; charset=utf-8", "atom": "application/atom+xml; charset=utf-8"}


def test_feedparser_reads_both_as_a_reader_would(papers):
    feedparser = pytest.importorskip("feedparser")
    items = _items(papers)
    rss = feedparser.parse(render_rss("T & <t>", SITE, f"{SITE}/f.rss", "d", items, UPDATED))
    atom = feedparser.parse(render_atom("T & <t>", SITE, f"{SITE}/f.atom", "s", items, UPDATED))
    assert (rss.bozo, rss.version, atom.bozo, atom.version) == (False, "rss20", False, "atom10")
    for parsed in (rss, atom):
        assert parsed.feed.title == "T & <t>" and len(parsed.entries) == len(items)
        for item, entry in zip(items, parsed.entries):
            title, authors, categories, abstract = _expected(item.paper)
            assert entry.title == title and entry.link == item.link and entry.id == item.link
            assert tuple(a.get("name") for a in entry.get("authors", [])) == authors
            assert tuple(t.term for t in entry.get("tags", [])) == categories
            expected = _expected_date(item.paper)
            assert dt.datetime(*entry.published_parsed[:6], tzinfo=UTC) == expected
    # RSS: the description is HTML, and the abstract's markup arrives as escaped text
    hostile = rss.entries[papers.index(HOSTILE)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile.summary and "<script" not in hostile.summary
    # Atom: the summary is plain text, given back exactly
    assert atom.entries[papers.index(HOSTILE)].summary == HOSTILE_ABSTRACT_OUT
