"""The HTML side: every page renders, escaping, security headers, CSRF on forms, no state change on
GET, log-in/out, rate limits, the subscribe form, feeds, and account export/deletion."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from starlette.testclient import TestClient

from papersift.errors import NotFound
from papersift.models import Paper
from papersift.web.app import create_app


@pytest.fixture
def app(web_settings):
    app = create_app(web_settings)
    yield app
    app.state.site.store.close()  # create_app closes it when the server stops: here for apps never started


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def csrf_of(html: str) -> str:
    return html.split('name="csrf-token" content="')[1].split('"')[0]


def signup(client, name="ada", password="correct horse battery", email=None):
    csrf = csrf_of(client.get("/signup").text)
    r = client.post("/signup", data={"username": name, "password": password, "email": email or f"{name}@example.org",
                                     "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf


def first_ref(client) -> str:
    return client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]


@pytest.mark.parametrize("path", ["/", "/daily", "/weekly", "/monthly", "/?date=2026-06-30", "/categories/cs.CL",
                                  "/search", "/search?q=diffusion+models", "/login", "/signup", "/subscribe"])
def test_pages_render_with_security_headers(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text  # no inline script: the CSP would block it
    cookie = r.headers.get("set-cookie", "")
    assert "papersift_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_daily_page_lists_the_latest_day_with_date_navigation(client):
    html = client.get("/").text
    assert "Daily papers" in html and "1 Jul 2026" in html
    assert 'href="/?date=2026-06-30"' in html  # previous listing day
    older = client.get("/?date=2026-06-30").text
    assert 'href="/?date=2026-07-01"' in older and 'href="/?date=2026-06-29"' in older


def test_paper_page_shows_everything(client):
    ref = first_ref(client)
    paper = client.get(f"/api/papers/{ref}").json()
    html = client.get(f"/papers/{ref}").text
    assert paper["title"].replace("&", "&amp;") in html or paper["title"] in html
    assert f"https://arxiv.org/pdf/{ref}" in html and "Related papers" in html
    assert html.count('class="paper-row related-row"') == 10  # ten related papers
    assert "@misc{" in html and f"eprint = {{{ref}}}" in html
    bib = client.get(f"/papers/{ref}/bibtex")
    assert bib.headers["content-type"].startswith("application/x-bibtex") and bib.text.startswith("@")


def test_missing_pages_are_helpful_404s(client):
    for path in ("/papers/2606.99999", "/no/such/page", "/authors/Nobody%20Here", "/collections/999"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (404, 303), path
        if r.status_code == 404:
            assert "Not found" in r.text and 'action="/search"' in r.text


def test_titles_and_queries_are_escaped(client, app):
    store = app.state.site.store
    store.upsert_papers([Paper(title='<script>alert("t")</script> & <b>bold</b>', arxiv_id="2607.00001",
                               abstract="<img src=x onerror=alert(1)> attention", authors=("<i>Eve</i>",),
                               categories=("cs.CL",), source="test")])
    html = client.get("/papers/2607.00001").text
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "<img src=x" not in html and "<i>Eve</i>" not in html
    r = client.get("/search", params={"q": '<script>alert(1)</script>'})
    assert r.status_code == 200 and "<script>alert(1)" not in r.text


def test_no_state_change_on_get(client, app):
    signup(client)
    ref = first_ref(client)
    for path in (f"/papers/{ref}/upvote", f"/papers/{ref}/save", f"/papers/{ref}/collect", "/logout",
                 "/account/delete", "/collections", "/account/tokens"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (400, 404, 405), path
    assert client.get("/library").status_code == 200  # GET /logout did not log out
    assert client.get("/account").status_code == 200  # GET /account/delete deleted nothing
    assert app.state.site.store.interactions() == []  # no upvote, save or view recorded
    assert app.state.site.store.api_tokens(app.state.site.store.get_user("ada").id) == []


def test_forms_without_a_valid_csrf_token_are_refused(client):
    signup(client)
    ref = first_ref(client)
    for data in ({}, {"csrf_token": "forged"}):
        r = client.post(f"/papers/{ref}/upvote", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    other = TestClient(client.app)  # another browser: its own csrf cookie, so ada's token is no use to it
    r = other.post("/subscribe", data={"email": "x@example.org", "frequency": "daily",
                                       "csrf_token": csrf_of(client.get("/").text)})
    assert r.status_code == 403


def test_upvote_save_and_collect_through_forms(client, app):
    csrf = signup(client)
    ref = first_ref(client)
    r = client.post(f"/papers/{ref}/upvote", data={"csrf_token": csrf, "on": "1", "next": "/weekly"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/weekly"
    r = client.post(f"/papers/{ref}/upvote", data={"csrf_token": csrf, "on": "1", "next": "https://evil.example/"},
                    follow_redirects=False)
    assert r.headers["location"] == f"/papers/{ref}"  # no open redirect
    assert client.get(f"/api/papers/{ref}").json()["upvotes"] == 1
    client.post(f"/papers/{ref}/collect", data={"csrf_token": csrf, "new_collection": "To read"})
    library = client.get("/library").text
    assert "To read" in library and ref in library
    assert client.get(f"/api/papers/{ref}").json()["saved"] is True


def test_login_logout_and_wrong_passwords(client, app):
    signup(client, "bob", "a long enough password")
    csrf = csrf_of(client.get("/").text)
    client.post("/logout", data={"csrf_token": csrf})
    assert client.get("/library", follow_redirects=False).headers["location"].startswith("/login")
    csrf = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"username": "bob", "password": "wrong password!", "csrf_token": csrf})
    assert bad.status_code == 401 and "wrong username or password" in bad.text
    nouser = client.post("/login", data={"username": "nobody", "password": "wrong password!", "csrf_token": csrf})
    assert nouser.status_code == 401 and "wrong username or password" in nouser.text
    ok = client.post("/login", data={"username": "BOB", "password": "a long enough password", "csrf_token": csrf},
                     follow_redirects=False)
    assert ok.status_code == 303 and "HttpOnly" in ok.headers["set-cookie"]
    assert "SameSite=lax" in ok.headers["set-cookie"]
    assert client.get("/library").status_code == 200
    # the database holds an argon2 hash, never the password
    store = app.state.site.store
    stored = store.get_password_hash(store.get_user("bob").id)
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored


def test_logout_ends_the_session_on_the_server(client):
    signup(client)
    cookie = client.cookies.get("papersift_session")
    csrf = csrf_of(client.get("/").text)
    client.post("/logout", data={"csrf_token": csrf})
    replay = TestClient(client.app, cookies={"papersift_session": cookie})
    assert replay.get("/library", follow_redirects=False).status_code == 303  # the stolen cookie is dead


def test_login_is_rate_limited(client):
    signup(client, "carol", "carols password 1")
    csrf = csrf_of(client.get("/login").text)
    codes = [client.post("/login", data={"username": "carol", "password": f"guess {i} xxxxx", "csrf_token": csrf}).status_code
             for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_signup_validation_keeps_what_was_typed(client):
    csrf = csrf_of(client.get("/signup").text)
    r = client.post("/signup", data={"username": "dave", "password": "short", "email": "dave@example.org",
                                     "csrf_token": csrf})
    assert r.status_code == 400 and "at least 10" in r.text and 'value="dave@example.org"' in r.text
    signup(client, "erin")
    csrf = csrf_of(client.get("/signup").text)
    again = client.post("/signup", data={"username": "ERIN", "password": "another long one", "csrf_token": csrf})
    assert again.status_code == 409


def test_subscribe_records_a_pending_subscription(client, app):
    csrf = csrf_of(client.get("/subscribe").text)
    r = client.post("/subscribe", data={"email": "reader@example.org", "frequency": "weekly",
                                        "categories": "cs.CL, cs.LG", "csrf_token": csrf})
    assert r.status_code == 200 and "confirmation link" in r.text
    sub = app.state.site.store.get_subscription("reader@example.org")
    assert (sub.status, sub.frequency, sub.categories) == ("pending", "weekly", ("cs.CL", "cs.LG"))
    bad = client.post("/subscribe", data={"email": "not-an-email", "frequency": "daily", "csrf_token": csrf})
    assert bad.status_code == 400 and "not an email address" in bad.text


def test_feeds_are_valid_and_hold_the_lists(client):
    for path, root in (("/feeds/day.rss", "rss"), ("/feeds/week.atom", "{http://www.w3.org/2005/Atom}feed"),
                       ("/feeds/categories/cs.CL.atom", "{http://www.w3.org/2005/Atom}feed"),
                       ("/feeds/search.rss?q=robot+manipulation", "rss")):
        r = client.get(path)
        assert r.status_code == 200, path
        doc = ET.fromstring(r.content)
        assert doc.tag == root
        entries = doc.findall("channel/item") or doc.findall("{http://www.w3.org/2005/Atom}entry")
        assert entries, path
    day = client.get("/api/daily_papers", params={"limit": 50}).json()
    rss = ET.fromstring(client.get("/feeds/day.rss").content)
    assert [i.findtext("title") for i in rss.findall("channel/item")] == [d["title"] for d in day]
    assert client.get("/feeds/day.json").status_code == 400


def test_export_and_delete_account(client, app):
    csrf = signup(client, "frank", "franks password!")
    ref = first_ref(client)
    client.post(f"/papers/{ref}/save", data={"csrf_token": csrf, "on": "1"})
    data = json.loads(client.get("/account/export.json").content)
    assert data["account"]["username"] == "frank" and data["interactions"][0]["paper"] == ref
    bib = client.get("/account/export.bib").text
    assert f"eprint = {{{ref}}}" in bib
    wrong = client.post("/account/delete", data={"csrf_token": csrf, "password": "not it at all"})
    assert wrong.status_code == 401
    gone = client.post("/account/delete", data={"csrf_token": csrf, "password": "franks password!"},
                       follow_redirects=False)
    assert gone.status_code == 303
    store = app.state.site.store
    assert store.interactions() == [] and store.get_subscription("frank@example.org") is None
    with pytest.raises(NotFound):
        store.get_user("frank")


def test_changing_the_password_logs_out_other_sessions(app):
    with TestClient(app) as laptop, TestClient(app) as phone:
        csrf = signup(laptop, "gina", "ginas first password")
        phone_csrf = csrf_of(phone.get("/login").text)
        phone.post("/login", data={"username": "gina", "password": "ginas first password", "csrf_token": phone_csrf})
        assert phone.get("/library").status_code == 200
        wrong = laptop.post("/account/password", data={"csrf_token": csrf, "current": "not it", "new": "x" * 12})
        assert wrong.status_code == 401
        ok = laptop.post("/account/password", data={"csrf_token": csrf, "current": "ginas first password",
                                                     "new": "ginas second password"})
        assert ok.status_code == 200 and "1 other session logged out" in ok.text
        assert laptop.get("/library").status_code == 200  # this session stays
        assert phone.get("/library", follow_redirects=False).status_code == 303  # the other one ended
        csrf = csrf_of(phone.get("/login").text)
        old = phone.post("/login", data={"username": "gina", "password": "ginas first password", "csrf_token": csrf})
        assert old.status_code == 401
