"""Building and rendering a digest, pure: periods, windows, merging, what is left out, and the email
itself (both parts, autoescaped HTML, links into the site with tokens that verify, RFC 8058 headers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse
from email import message_from_bytes, policy

import pytest
from conftest import sample_papers

from papersift.errors import BadInput
from papersift.models import Hit
from papersift.notify.digest import build_digest, merge_hits, period_key, pick_window
from papersift.notify.render import Links, confirmation_message, digest_message, message_id
from papersift.signing import verify

BASE = "https://papers.example.org"
KEY = "test-key"
NOW = dt.datetime(2026, 7, 2, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def papers():
    """Real arXiv papers of three listing days, with row ids as the catalog would give them."""
    return [dataclasses.replace(p, id=i) for i, p in enumerate(sample_papers(per_day=20), start=1)]


def hits_for(papers, score=lambda i: 100 - i):
    return [Hit(p.ref, float(score(i)), f"reason {i}") for i, p in enumerate(papers)]


def test_periods():
    assert period_key("daily", NOW) == "2026-07-02"
    assert period_key("weekly", NOW) == "2026-W27"
    assert period_key("weekly", dt.datetime(2027, 1, 1, 12)) == "2026-W53"  # ISO year, naive = UTC
    assert period_key("daily", dt.datetime(2026, 7, 2, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))) == "2026-07-03"
    with pytest.raises(BadInput):
        period_key("hourly", NOW)


def test_window_reaches_back_to_the_previous_digest():
    d = dt.date(2026, 7, 1)
    assert pick_window("daily", None, d) == "day"
    assert pick_window("daily", d - dt.timedelta(days=1), d) == "day"
    assert pick_window("daily", d - dt.timedelta(days=3), d) == "week"  # runs were skipped: catch up
    assert pick_window("daily", d - dt.timedelta(days=20), d) == "month"
    assert pick_window("weekly", None, d) == "week"
    assert pick_window("weekly", d - dt.timedelta(days=7), d) == "week"
    assert pick_window("weekly", d - dt.timedelta(days=90), d) == "month"


def test_merge_keeps_each_paper_once_with_its_best_score():
    merged = merge_hits([[Hit("a", 3.0), Hit("b", 1.0)], [Hit("b", 2.0), Hit("c", 2.0)], []])
    assert [(h.paper_id, h.score) for h in merged] == [("a", 3.0), ("b", 2.0), ("c", 2.0)]


def test_digest_never_repeats_a_paper_and_fills_up_to_the_limit(papers):
    by_ref = {p.ref: p for p in papers}
    trending = hits_for(papers)
    sent = {papers[0].id, papers[2].id}
    d = build_digest("a@example.org", "daily", (), "2026-07-02", trending=trending, papers=by_ref, exclude=sent, limit=5)
    assert [i.paper.id for i in d.trending] == [2, 4, 5, 6, 7]
    assert d.paper_ids == [2, 4, 5, 6, 7] and not d.picks and not d.is_empty
    assert d.trending[0].reason == "reason 1"
    # a paper in the picks is not repeated among the trending ones; picks take at most half
    picks = [Hit(papers[3].ref, 1.0, "similar to a paper you saved"), Hit(papers[9].ref, 0.9), Hit(papers[10].ref, 0.8),
             Hit(papers[11].ref, 0.7), Hit("no-such-paper", 0.6)]
    d = build_digest("a@example.org", "daily", (), "p", trending=trending, papers=by_ref, picks=picks, exclude=sent, limit=5)
    assert [i.paper.id for i in d.picks] == [4, 10, 11]  # 5 - min(5 trending, 5 // 2)
    assert [i.paper.id for i in d.trending] == [2, 5]
    assert len(set(d.paper_ids)) == len(d.paper_ids) == 5
    # with no trending paper left, the picks may fill the digest
    d = build_digest("a@example.org", "daily", (), "p", trending=[], papers=by_ref, picks=picks, limit=3)
    assert [i.paper.id for i in d.picks] == [4, 10, 11]
    with pytest.raises(BadInput):
        build_digest("a@example.org", "daily", (), "p", trending=trending, papers=by_ref, limit=0)


def test_trending_papers_must_be_newer_than_the_previous_digest(papers):
    by_ref = {p.ref: p for p in papers}
    last_day = max(p.listed for p in papers)
    d = build_digest("a@example.org", "daily", (), "p", trending=hits_for(papers), papers=by_ref,
                     after=last_day - dt.timedelta(days=1), limit=50)
    assert d.trending and all(i.paper.listed == last_day for i in d.trending)
    nothing = build_digest("a@example.org", "daily", (), "p", trending=hits_for(papers), papers=by_ref, after=last_day)
    assert nothing.is_empty and nothing.paper_ids == []
    # personal picks are not bound to the listing days
    picks = [Hit(papers[0].ref, 1.0)]
    assert build_digest("a@example.org", "daily", (), "p", trending=hits_for(papers), papers=by_ref, picks=picks,
                        after=last_day).paper_ids == [papers[0].id]


def _digest(papers, **kw):
    by_ref = {p.ref: p for p in papers}
    base = dict(trending=hits_for(papers), papers=by_ref, through=dt.date(2026, 7, 1), limit=4)
    base.update(kw)
    return build_digest("reader@example.org", "daily", ("cs.CL",), "2026-07-02", **base)


def test_the_email_has_both_parts_links_into_the_site_and_one_click_unsubscribe(papers):
    digest = _digest(papers)
    sent = digest_message(digest, Links(BASE, KEY), subscription_id=7, sender="papersift <digest@papers.example.org>",
                          date=NOW).as_bytes()
    msg = message_from_bytes(sent, policy=policy.default)  # as the receiver sees it
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"] == "reader@example.org" and msg["Subject"] == "papersift daily: 4 new papers for 1 Jul 2026"
    assert msg["Message-ID"] == message_id(KEY, 7, "digest", "2026-07-02", "digest@papers.example.org")
    assert msg["Message-ID"].endswith("@papers.example.org>")
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    for item in digest.items:
        url = BASE + "/papers/" + item.paper.ref
        assert f'href="{url}"' in html and url in text
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(h.startswith(BASE + "/") for h in hrefs)
    # RFC 8058: one line, not encoded, a POST-able https URL whose token verifies
    raw = sent.decode()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    line = next(x for x in raw.splitlines() if x.startswith("List-Unsubscribe:"))
    url = re.fullmatch(r"List-Unsubscribe: <(.+)>", line).group(1)
    assert url.startswith(BASE + "/unsubscribe?token=") and url in html and url in text
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
    assert verify(KEY, "unsubscribe", token, now=NOW.timestamp() + 5 * 365 * 86400) == {"email": "reader@example.org"}
    with pytest.raises(BadInput):
        verify("another key", "unsubscribe", token)


def test_html_is_autoescaped_and_text_is_plain(papers):
    hostile = dataclasses.replace(papers[0], title='<script>alert("x")</script> & <b>Bold</b> claims',
                                  abstract="We show <img src=x onerror=alert(1)> works.",
                                  authors=("Eve <eve@evil.example>",))
    msg = digest_message(_digest([hostile, *papers[1:]], limit=2), Links(BASE, KEY), subscription_id=1,
                         sender="papersift <p@example.org>", date=NOW)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script>" not in html and "<img" not in html and "<b>" not in html and "<eve@" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Bold&lt;/b&gt; claims" in html
    assert '<script>alert("x")</script> & <b>Bold</b> claims' in text  # plain text shows the title as it is
    assert "&lt;" not in text


def test_the_same_digest_renders_to_the_same_bytes(papers):
    """What makes a resend after a crash the same message (with a fixed Date, Message-ID and tokens)."""
    make = lambda: digest_message(_digest(papers), Links(BASE, KEY), subscription_id=3,  # noqa: E731
                                  sender="papersift <p@example.org>", date=NOW).as_bytes()
    first = make()
    assert re.sub(rb'boundary="?=+\d+=+"?|=+\d+=+', b"", first) == re.sub(rb'boundary="?=+\d+=+"?|=+\d+=+', b"", make())
    assert message_id(KEY, 3, "digest", "2026-07-02", "p@example.org") != message_id(KEY, 3, "digest", "2026-07-03",
                                                                                      "p@example.org")


def test_confirmation_email_links_expire_and_name_the_subscription():
    msg = confirmation_message(5, "new@example.org", "weekly", ("cs.LG",), "2026-07-02", Links(BASE, KEY),
                               sender="papersift <p@example.org>", date=NOW)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    url = re.search(r"(https://\S+/subscribe/confirm\?token=\S+)", text).group(1)
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
    assert verify(KEY, "confirm", token, now=NOW.timestamp() + 6 * 86400) == {"id": 5, "email": "new@example.org"}
    with pytest.raises(BadInput, match="expired"):
        verify(KEY, "confirm", token, now=NOW.timestamp() + 8 * 86400)
    with pytest.raises(BadInput):
        verify(KEY, "unsubscribe", token)  # a confirm link cannot unsubscribe, nor the other way round
    assert msg["List-Unsubscribe"].startswith(f"<{BASE}/unsubscribe?token=")
