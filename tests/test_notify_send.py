"""The sending run end to end, with real parts: real arXiv papers in a real SQLite catalog, a real SMTP
server on loopback (aiosmtpd), and the real web app (Starlette's TestClient) for the links in the emails.

Double opt-in, the digest email and its links, one-click unsubscribe, never a paper twice, nothing
sent when nothing is new, exactly once across crashes and reruns (and the one window that cannot be
closed), retries with backoff when the server is down or busy, a refused recipient, the preview.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import urllib.parse
from email.message import EmailMessage

import pytest
from conftest import sample_papers
from starlette.routing import Route
from starlette.testclient import TestClient
from test_notify_mail import free_port, mailer, smtp_server

from papersift.errors import ConfigError, NotFound
from papersift.models import Hit
from papersift.notify.send import preview, save_preview, send_due
from papersift.settings import load_settings
from papersift.signing import site_key, verify
from papersift.store import open_store

BASE = "http://papers.example.org"  # http: the test client sends no Secure cookies
DAY1 = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.timezone.utc)  # a Wednesday, ISO week 27
DAY2 = DAY1 + dt.timedelta(days=1)
DAY3 = DAY1 + dt.timedelta(days=2)
BACKOFF = (1.0, 2.0, 4.0)
HOSTILE = '<script>alert("digest")</script> Attention Is <b>All</b> You Need & More'


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory):
    """A catalog of the bundled sample's papers listed 29 and 30 June 2026, made once and copied per test."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.db"
    store = open_store(str(path), migrate=True)
    store.upsert_papers(sample_papers(days=("2026-06-29", "2026-06-30")))
    store.close()
    return path


@pytest.fixture(scope="module")
def next_day_papers():
    return sample_papers(days=("2026-07-01",), per_day=120)


@pytest.fixture
def db(catalog_file, tmp_path):
    shutil.copy(catalog_file, tmp_path / "catalog.db")
    store = open_store(str(tmp_path / "catalog.db"), migrate=True)
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path):
    return load_settings({"config_file": str(tmp_path / "none.toml"), "data_dir": str(tmp_path), "base_url": BASE,
                          "digest_papers": 5}, environ={})


@pytest.fixture
def smtp():
    """A real SMTP server on loopback that keeps what it accepts (test_notify_mail.Inbox)."""
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture
def web(db, settings, monkeypatch):
    """The real site over the same catalog. Until app.py takes in digest_pages.ROUTES and CSRF_EXEMPT,
    they are wired here the way it will: the same `endpoint` wrapper, and the CSRF check skipped only
    for the exempt paths' POSTs."""
    from papersift.web import app as web_app
    from papersift.web import digest_pages

    app = web_app.create_app(settings, db, discovery=object())  # these pages never search
    if not any(getattr(r, "path", None) == digest_pages.UNSUBSCRIBE for r in app.routes):
        app.router.routes[:0] = [Route(path, web_app.endpoint(fn, api=False), methods=methods)
                                 for path, fn, methods in digest_pages.ROUTES]
        check = web_app._check_csrf

        def check_unless_exempt(ctx):
            if not (ctx.request.method == "POST" and ctx.request.url.path in digest_pages.CSRF_EXEMPT):
                check(ctx)
        monkeypatch.setattr(web_app, "_check_csrf", check_unless_exempt)
    return app


def subscribe(db, *specs):
    """Active subscriptions: (name, frequency, categories[, with an account])."""
    out = {}
    for name, frequency, cats, *account in specs:
        user = db.create_user(name, f"{name}@example.org") if account and account[0] else None
        out[name] = db.upsert_subscription(f"{name}@example.org", frequency, cats, user_id=user.id if user else None,
                                           status="active")
    return out


FIVE = [("ada", "daily", ["cs.CL"]), ("bob", "weekly", []), ("cy", "daily", ["cs.LG"]), ("dee", "daily", ["cs.CV"]),
        ("eve", "daily", ["cs.AI", "cs.CL"])]


def run(db, settings, m, now, sleeps=None, **kw):
    return send_due(db, settings, m, now, backoff=BACKOFF, sleep=(sleeps.append if sleeps is not None else _no_sleep), **kw)


def _no_sleep(seconds):
    raise AssertionError(f"unexpected backoff of {seconds} s")


def digests_to(inbox, name) -> list[EmailMessage]:
    return [m for m in inbox.to(f"{name}@example.org") if m["Message-ID"].startswith("<digest.")]


def hrefs(msg: EmailMessage) -> list[str]:
    return re.findall(r'href="([^"]+)"', msg.get_body(("html",)).get_content())


def paper_refs(msg: EmailMessage) -> list[str]:
    prefix = BASE + "/papers/"
    return [urllib.parse.unquote(h[len(prefix):]) for h in hrefs(msg) if h.startswith(prefix)]


def path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    return parts.path + "?" + parts.query


def token_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]


class Crashing:
    """Delivers through `inner` until `after` messages went out, then dies on the next one: before
    handing it over (`when="before"`), or after the server accepted it (`when="after"`)."""

    def __init__(self, inner, after: int, exc=KeyboardInterrupt, when: str = "before"):
        self.inner, self.after, self.exc, self.when, self.count = inner, after, exc, when, 0

    def send(self, msg):
        if self.count == self.after:
            self.count += 1
            if self.when == "after":
                self.inner.send(msg)
            raise self.exc()
        self.inner.send(msg)
        self.count += 1

    def close(self):
        self.inner.close()


# -- double opt-in -------------------------------------------------------------------------------

def test_double_opt_in_confirms_through_the_site_then_digests_start(db, settings, smtp, web):
    db.upsert_subscription("new@example.org", "daily", ["cs.CL"])  # what the Subscribe form records
    now = dt.datetime.now(dt.timezone.utc)  # the link expires in days of real time: the site checks the clock
    with mailer(smtp) as m:
        report = run(db, settings, m, now)
        assert (report.confirmations, report.digests) == (1, 0)
        assert run(db, settings, m, now + dt.timedelta(hours=1)).confirmations == 0  # not twice a day
    [ask] = smtp.to("new@example.org")
    assert ask["Message-ID"].startswith("<confirm.") and "Confirm" in ask["Subject"]
    assert [p.get_content_type() for p in ask.iter_parts()] == ["text/plain", "text/html"]
    url = re.search(r"(\S+/subscribe/confirm\?token=\S+)", ask.get_body(("plain",)).get_content()).group(1)
    assert url in hrefs(ask)
    assert verify(site_key(settings, db), "confirm", token_of(url))["email"] == "new@example.org"

    with TestClient(web) as client:
        page = client.get(path_of(url))
        assert page.status_code == 200 and "Confirm my subscription" in page.text
        assert db.get_subscription("new@example.org").status == "pending"  # a GET changes nothing
        assert client.head(path_of(url)).status_code in (200, 405)
        assert db.get_subscription("new@example.org").status == "pending"
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        done = client.post("/subscribe/confirm", data={"token": token_of(url), "csrf_token": csrf})
        assert done.status_code == 200 and "Thank you" in done.text
    sub = db.get_subscription("new@example.org")
    assert sub.status == "active" and sub.confirmed_at

    with mailer(smtp) as m:
        report = run(db, settings, m, DAY1 + dt.timedelta(hours=2))
    assert (report.confirmations, report.digests) == (0, 1)
    [digest] = digests_to(smtp, "new")
    assert len(paper_refs(digest)) == 5


def test_confirmation_is_asked_at_most_once_a_day_and_three_times_a_month(db, settings, smtp):
    db.upsert_subscription("maybe@example.org", "weekly")
    asked = []
    with mailer(smtp) as m:
        for hours in (0, 1, 23, 25, 30, 49, 73, 100, 200, 24 * 29):
            asked.append(run(db, settings, m, DAY1 + dt.timedelta(hours=hours)).confirmations)
    assert asked == [1, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert len(smtp.to("maybe@example.org")) == 3
    assert len({m["Message-ID"] for m in smtp.messages}) == 3
    # unsubscribed, then back two months later: the old requests no longer count against a new one
    db.set_subscription_status("maybe@example.org", "unsubscribed")
    db.upsert_subscription("maybe@example.org", "weekly")
    db.set_subscription_status("maybe@example.org", "pending")
    with mailer(smtp) as m:
        assert run(db, settings, m, DAY1 + dt.timedelta(days=60)).confirmations == 1
    assert len(smtp.to("maybe@example.org")) == 4


# -- the digest email, its links, one-click unsubscribe ------------------------------------------

def test_digest_has_both_parts_valid_links_and_one_click_unsubscribe(db, settings, smtp, web, next_day_papers):
    real = db.papers_listed(dt.date(2026, 6, 30), dt.date(2026, 6, 30), "cs.CL", limit=1)[0]
    hostile = dataclasses.replace(real, id=None, arxiv_id="2606.99999", doi=None, title=HOSTILE,
                                  signals={"hf_upvotes": 500})  # trending first
    db.upsert_papers([hostile])
    subscribe(db, ("ada", "daily", ["cs.CL"]))
    with mailer(smtp) as m:
        assert run(db, settings, m, DAY1).digests == 1
    [msg] = digests_to(smtp, "ada")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    html, text = msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()

    refs = paper_refs(msg)
    assert refs[0] == "2606.99999" and len(refs) == 5
    for ref in refs:  # every paper links to its page on the site, and each is a paper of ada's category
        assert BASE + "/papers/" + ref in text
        assert "cs.CL" in db.get_paper(ref).categories
    assert all(h.startswith(BASE + "/") for h in hrefs(msg))
    assert "<script>" not in html and "<b>All</b>" not in html
    assert "&lt;script&gt;alert(&#34;digest&#34;)&lt;/script&gt; Attention Is &lt;b&gt;All&lt;/b&gt; You Need &amp; More" in html
    assert HOSTILE in text

    unsubscribe_url = re.fullmatch(r"<(.+)>", msg["List-Unsubscribe"]).group(1)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert verify(site_key(settings, db), "unsubscribe", token_of(unsubscribe_url)) == {"email": "ada@example.org"}
    assert unsubscribe_url in html and unsubscribe_url in text

    with TestClient(web) as provider:  # a mail provider: no cookie, no CSRF token, just the RFC 8058 body
        r = provider.post(path_of(unsubscribe_url), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
        assert provider.post(path_of(unsubscribe_url), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert db.get_subscription("ada@example.org").status == "unsubscribed"

    db.upsert_papers(next_day_papers)
    with mailer(smtp) as m:
        report = run(db, settings, m, DAY2)
    assert report.digests == 0 and len(smtp.messages) == 1  # the next run sends nothing


def test_link_pages_check_tokens_and_change_nothing_on_get(db, settings, web):
    subscribe(db, ("ada", "daily", ["cs.CL"]))
    key = site_key(settings, db)
    from papersift.signing import sign

    unsub = sign(key, "unsubscribe", {"email": "ada@example.org"})
    with TestClient(web) as client:
        page = client.get("/unsubscribe", params={"token": unsub})
        assert page.status_code == 200 and "Unsubscribe" in page.text and 'name="token"' in page.text
        assert db.get_subscription("ada@example.org").status == "active"
        for bad in ("", "garbage", sign("another key", "unsubscribe", {"email": "ada@example.org"}),
                    sign(key, "confirm", {"id": 1, "email": "ada@example.org"})):
            assert client.get("/unsubscribe", params={"token": bad}).status_code == 400
            assert client.post("/unsubscribe", params={"token": bad}, data={"List-Unsubscribe": "One-Click"}).status_code == 400
        assert db.get_subscription("ada@example.org").status == "active"
        # the confirm POST is not exempt from the CSRF check: without the page's token it is refused
        confirm = sign(key, "confirm", {"id": db.get_subscription("ada@example.org").id, "email": "ada@example.org"})
        assert client.post("/subscribe/confirm", data={"token": confirm}).status_code == 403
        # the browser form (token in the body) unsubscribes, twice is fine, and so is an address we do not know
        r = client.post("/unsubscribe", data={"token": unsub})
        assert r.status_code == 200 and "no more digests" in r.text
        assert client.post("/unsubscribe", data={"token": unsub}).status_code == 200
        gone = sign(key, "unsubscribe", {"email": "nobody@example.org"})
        assert client.post("/unsubscribe", params={"token": gone}, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        # a confirm link for a subscription cancelled since it was sent does not bring it back
        csrf = client.get("/unsubscribe", params={"token": unsub}).text.split('name="csrf-token" content="')[1].split('"')[0]
        r = client.post("/subscribe/confirm", data={"token": confirm, "csrf_token": csrf})
        assert r.status_code == 400
    assert db.get_subscription("ada@example.org").status == "unsubscribed"


# -- what goes in a digest -----------------------------------------------------------------------

def test_never_a_paper_twice_across_periods(db, settings, smtp, next_day_papers):
    subs = subscribe(db, ("ada", "daily", [], True), ("bob", "weekly", []))
    favourites = [p.ref for p in db.papers_listed(dt.date(2026, 6, 29), dt.date(2026, 6, 29), limit=15)]
    asked = []

    def picks(user_id, since, limit):  # a recommender that keeps suggesting the same papers
        asked.append((user_id, since))
        return [Hit(ref, 1.0 - i / 100, "similar to what you saved") for i, ref in enumerate(favourites)]

    viewed = db.get_paper(favourites[0])
    db.add_interaction(subs["ada"].user_id, viewed.id, "view")  # already seen: no news to ada
    with mailer(smtp) as m:
        assert run(db, settings, m, DAY1, picks=picks).digests == 2
        db.upsert_papers(next_day_papers)
        assert run(db, settings, m, DAY2, picks=picks).digests == 1  # bob's week is done
        assert run(db, settings, m, DAY3, picks=picks).digests == 1  # picks alone: no newer listing day
    ada = digests_to(smtp, "ada")
    assert len(ada) == 3 and len(digests_to(smtp, "bob")) == 1
    refs = [paper_refs(m) for m in ada]
    every = [r for day in refs for r in day]
    assert len(every) == len(set(every)) == 15  # five a day, none twice
    assert favourites[0] not in every
    assert set(refs[2]) <= set(favourites)
    assert asked[0][0] == subs["ada"].user_id and asked[1][1] > asked[0][1]  # "since the last digest"
    # the catalog's record agrees with what was mailed
    mailed = {db.get_papers([i])[0].ref for i in db.mailed_paper_ids(subs["ada"].id)}
    assert mailed == set(every)


def test_a_digest_with_nothing_new_is_not_sent(db, settings, smtp, next_day_papers):
    subscribe(db, ("cy", "daily", ["cs.LG"]))
    with mailer(smtp) as m:
        assert run(db, settings, m, DAY1).digests == 1
        report = run(db, settings, m, DAY2)  # no newer listing day yet
        assert (report.digests, report.empty) == (0, 1)
        db.upsert_papers(next_day_papers)  # the day's papers arrive later that day
        assert run(db, settings, m, DAY2 + dt.timedelta(hours=3)).digests == 1
    first, second = digests_to(smtp, "cy")
    assert not set(paper_refs(first)) & set(paper_refs(second))
    assert all(db.get_paper(r).listed == dt.date(2026, 7, 1) for r in paper_refs(second))


# -- exactly once --------------------------------------------------------------------------------

def assert_one_each(inbox, names):
    for name in names:
        got = digests_to(inbox, name)
        assert len(got) == 1, f"{name} got {len(got)} digests"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_crash_mid_run_then_a_rerun_sends_every_digest_exactly_once(db, settings, smtp, exc):
    subscribe(db, *FIVE)
    with mailer(smtp) as m, pytest.raises(exc):
        run(db, settings, Crashing(m, after=2, exc=exc), DAY1)
    assert len(smtp.messages) == 2
    with mailer(smtp) as m:
        report = run(db, settings, m, DAY1 + dt.timedelta(minutes=1))
        assert (report.digests, report.resumed, report.busy) == (3, 1, 0)
        assert run(db, settings, m, DAY1 + dt.timedelta(minutes=2)).digests == 0
    assert_one_each(smtp, [n for n, *_ in FIVE])


def test_an_interrupt_after_the_server_accepted_is_recorded_as_sent(db, settings, smtp, monkeypatch):
    subscribe(db, *FIVE)
    finish, calls = db.finish_mailing, []

    def interrupted_once(*args, **kw):  # Ctrl-C arrives just as the store is about to record the send
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return finish(*args, **kw)
    monkeypatch.setattr(db, "finish_mailing", interrupted_once)
    with mailer(smtp) as m, pytest.raises(KeyboardInterrupt):
        run(db, settings, m, DAY1)
    monkeypatch.undo()
    with mailer(smtp) as m:  # after the lease, so that only the record can keep a second copy from going out
        report = run(db, settings, m, DAY1 + dt.timedelta(minutes=11))
        assert (report.digests, report.resumed) == (3, 0)
    assert_one_each(smtp, [n for n, *_ in FIVE])


def test_the_window_left_open_a_hard_crash_after_the_server_accepted(db, settings, smtp):
    """The documented window: the server took the message, the process died before the store knew.
    The rerun sends that one message again, the same bytes with the same Message-ID, so that receivers
    can drop the copy; every other reader still gets exactly one."""
    subscribe(db, *FIVE)
    with mailer(smtp) as m, pytest.raises(SystemExit):
        run(db, settings, Crashing(m, after=1, exc=SystemExit, when="after"), DAY1)
    with mailer(smtp) as m:
        run(db, settings, m, DAY1)
    counts = {n: len(digests_to(smtp, n)) for n, *_ in FIVE}
    twice = [n for n, c in counts.items() if c == 2]
    assert len(twice) == 1 and all(c == 1 for n, c in counts.items() if n not in twice)
    a, b = digests_to(smtp, twice[0])
    assert a["Message-ID"] == b["Message-ID"] and a["Date"] == b["Date"]
    assert a.get_body(("html",)).get_content() == b.get_body(("html",)).get_content()


def test_a_hard_crash_leaves_a_lease_that_a_later_run_takes_over(db, settings, smtp, monkeypatch):
    subscribe(db, *FIVE)
    monkeypatch.setattr(db, "release_mailing", lambda *a, **k: True)  # kill -9: no cleanup runs
    with mailer(smtp) as m, pytest.raises(KeyboardInterrupt):
        run(db, settings, Crashing(m, after=1), DAY1)
    monkeypatch.undo()
    with mailer(smtp) as m:
        report = run(db, settings, m, DAY1 + dt.timedelta(minutes=1))  # the dead run's lease is still live
        assert (report.digests, report.busy) == (3, 1)
        report = run(db, settings, m, DAY1 + dt.timedelta(minutes=11))
        assert (report.digests, report.resumed) == (1, 1)
    assert_one_each(smtp, [n for n, *_ in FIVE])


# -- a server that is down or busy, a recipient that is refused ----------------------------------

def test_a_down_server_is_retried_with_backoff_and_nothing_is_lost(db, settings):
    subscribe(db, *FIVE)
    port, sleeps = free_port(), []
    with smtp_server(port=port) as inbox:  # only to get a mailer for that port
        m = mailer(inbox)
    report = run(db, settings, m, DAY1, sleeps)  # nothing listens there now
    assert sleeps == list(BACKOFF) and report.retried == 3
    assert (report.digests, report.deferred) == (0, 1) and "cannot reach" in report.stopped
    with smtp_server(port=port) as inbox, mailer(inbox) as m:
        report = run(db, settings, m, DAY1 + dt.timedelta(minutes=5))
        assert (report.digests, report.resumed, report.stopped) == (5, 1, None)
    assert_one_each(inbox, [n for n, *_ in FIVE])


def test_a_busy_server_421_is_retried_and_each_reader_gets_one(db, settings, smtp):
    subscribe(db, *FIVE)
    smtp.data_replies = ["421 4.3.2 too busy, try later", "421 4.3.2 too busy, try later"]
    sleeps = []
    with mailer(smtp) as m:
        report = run(db, settings, m, DAY1, sleeps)
    assert sleeps == [1.0, 2.0] and report.retried == 2 and report.digests == 5 and report.ok
    assert_one_each(smtp, [n for n, *_ in FIVE])


def test_a_refused_recipient_is_recorded_and_does_not_stop_the_others(db, settings, smtp):
    subs = subscribe(db, *FIVE)
    smtp.refuse = {"cy@example.org"}
    with mailer(smtp) as m:
        report = run(db, settings, m, DAY1)
        assert (report.digests, report.failed, report.ok) == (4, 1, True)
        assert report.problems == ["cy@example.org: the mail server 127.0.0.1:%d refused the recipient: "
                                   "550 5.1.1 no such mailbox" % smtp.port]
        failed = db.get_mailing(subs["cy"].id, "digest", "2026-07-01")
        assert failed["status"] == "failed" and "550" in failed["error"] and failed["message"] is None
        assert db.mailed_paper_ids(subs["cy"].id) == set()  # never reached cy: may come in a later digest
        assert run(db, settings, m, DAY1 + dt.timedelta(hours=1)).failed == 0  # recorded, not retried
    assert digests_to(smtp, "cy") == [] and len(smtp.messages) == 4


# -- preview and settings ------------------------------------------------------------------------

def test_preview_writes_the_eml_and_html_and_records_nothing(db, settings, tmp_path):
    subs = subscribe(db, ("ada", "daily", ["cs.CL"], True))
    msg = preview(db, settings, "ada", DAY1)
    assert msg["To"] == "ada@example.org" and msg["X-Papersift-Preview"] == "yes"
    paths = save_preview(msg, tmp_path / "preview")
    assert [p.suffix for p in paths] == [".eml", ".html", ".txt"] and all(p.stat().st_size for p in paths)
    assert BASE + "/papers/" in paths[1].read_text()
    assert db.mailings(subs["ada"].id) == []
    # by email, by user id, and a user without a subscription (the default: daily, every category)
    assert preview(db, settings, "ada@example.org", DAY1)["Subject"] == msg["Subject"]
    assert preview(db, settings, subs["ada"].user_id, DAY1)["To"] == "ada@example.org"
    db.create_user("zed", "zed@example.org")
    assert len(paper_refs(preview(db, settings, "zed", DAY1))) == 5
    with pytest.raises(NotFound):
        preview(db, settings, "nobody", DAY1)


def test_links_need_a_base_url(db, tmp_path, smtp):
    bare = load_settings({"config_file": str(tmp_path / "none.toml"), "data_dir": str(tmp_path)}, environ={})
    with mailer(smtp) as m:
        with pytest.raises(ConfigError, match="public address") as e:
            send_due(db, bare, m, DAY1)
        assert "base_url" in e.value.hint
        subscribe(db, ("ada", "daily", ["cs.CL"]))
        assert send_due(db, bare, m, DAY1, base_url="http://localhost:8000/").digests == 1
    assert all(h.startswith("http://localhost:8000/") for h in hrefs(smtp.messages[0]))
