"""The JSON API on a real catalog of ~450 real papers indexed with the real model: every endpoint,
good and bad input, the one error shape, authentication, CSRF and ownership."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from papersift.web.app import create_app
from papersift.web.openapi import ENDPOINTS

ERROR_KEYS = {"ok", "error", "errors", "status"}


@pytest.fixture
def app(web_settings):
    app = create_app(web_settings)
    yield app
    app.state.site.store.close()  # create_app closes it when the server stops: here for apps never started


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def test_the_server_closes_the_catalog_it_opened_when_it_stops(web_settings, backend):
    if backend != "postgresql":
        pytest.skip("a SQLite store holds no connection pool")
    app = create_app(web_settings)
    with TestClient(app) as c:
        assert c.get("/api/papers/search", params={"q": "graph"}).status_code == 200
        assert not app.state.site.store._pool.closed
    assert app.state.site.store._pool.closed  # no connections left open on the server after shutdown


def assert_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert ERROR_KEYS <= set(body) and body["ok"] is False and body["status"] == status
    assert isinstance(body["error"], str) and body["error"] and body["errors"] == [body["error"]]
    return body


def signup(client, name="ada", password="correct horse battery"):
    """Sign up through the real form (CSRF token from the page) and return the client, logged in."""
    page = client.get("/signup")
    token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    r = client.post("/signup", data={"username": name, "password": password, "email": f"{name}@example.org",
                                     "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return token


def api_token(client, csrf, name="script"):
    r = client.post("/account/tokens", data={"name": name, "csrf_token": csrf})
    assert r.status_code == 200
    return r.text.split('class="token">')[1].split("<")[0]


# -- reading -------------------------------------------------------------------------------------

def test_daily_papers_shape_dates_and_windows(client):
    day = client.get("/api/daily_papers").json()
    assert len(day) == 30  # the default page size; the latest day holds 150 papers
    first = day[0]
    assert {"paper", "title", "summary", "publishedAt", "reason", "score"} <= set(first)
    assert first["paper"]["listed"] == "2026-07-01"  # the latest day in the catalog, not today's date
    assert first["paper"]["authors"] and all(set(a) == {"name"} for a in first["paper"]["authors"])
    older = client.get("/api/daily_papers", params={"date": "2026-06-30", "limit": 100}).json()
    assert len(older) == 100 and {p["paper"]["listed"] for p in older} == {"2026-06-30"}
    week = client.get("/api/daily_papers", params={"window": "week", "limit": 100, "p": 4}).json()
    assert len(week) == 50  # 450 papers in the week: the fifth page of 100 holds the last 50
    assert {p["paper"]["listed"] for p in week} <= {"2026-06-29", "2026-06-30", "2026-07-01"}
    empty = client.get("/api/daily_papers", params={"date": "2026-06-20"}).json()
    assert empty == []


def test_pagination_links_and_pages_do_not_overlap(client):
    r1 = client.get("/api/daily_papers", params={"limit": 20})
    assert 'rel="next"' in r1.headers["link"]
    r2 = client.get("/api/daily_papers", params={"limit": 20, "p": 1})
    r2b = client.get("/api/daily_papers", params={"limit": 20, "offset": 20})
    ids1 = [x["paper"]["id"] for x in r1.json()]
    ids2 = [x["paper"]["id"] for x in r2.json()]
    assert ids2 == [x["paper"]["id"] for x in r2b.json()]
    assert not set(ids1) & set(ids2)


@pytest.mark.parametrize("params,what", [
    ({"date": "2026-13-01"}, "date"), ({"date": "yesterday"}, "date"), ({"limit": "100000"}, "limit"),
    ({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"), ({"p": "-1"}, "p"), ({"window": "year"}, "window"),
    ({"offset": "7", "limit": "5"}, "offset"),
])
def test_bad_list_parameters_are_400_with_the_error_shape(client, params, what):
    body = assert_error(client.get("/api/daily_papers", params=params), 400)
    assert what in body["error"]


def test_one_paper_and_its_related_papers(client):
    listed = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]
    paper = client.get(f"/api/papers/{listed['id']}").json()
    assert paper["id"] == listed["id"] and paper["title"] == listed["title"]
    assert paper["links"]["abs"] == f"https://arxiv.org/abs/{paper['id']}"
    assert paper["links"]["page"].endswith(f"/papers/{paper['id']}")
    related = client.get(f"/api/papers/{paper['id']}/related", params={"limit": 5}).json()
    assert len(related) == 5
    assert paper["id"] not in {r["paper"]["id"] for r in related}
    assert all(r["reason"] for r in related)
    assert [r["score"] for r in related] == sorted((r["score"] for r in related), reverse=True)


def test_unknown_and_malformed_paper_ids(client):
    assert_error(client.get("/api/papers/2606.99999"), 404)
    assert_error(client.get("/api/papers/2606.99999/related"), 404)
    assert_error(client.get("/api/papers/not-an-id"), 400)
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.post("/api/daily_papers"), 405)


def test_search_finds_a_paper_by_its_title_and_survives_hostile_queries(client):
    target = client.get("/api/daily_papers", params={"date": "2026-06-30", "limit": 1}).json()[0]["paper"]
    hits = client.get("/api/papers/search", params={"q": target["title"], "limit": 5}).json()
    assert hits[0]["paper"]["id"] == target["id"]
    by_id = client.get("/api/papers/search", params={"q": f"arXiv:{target['id']}v1"}).json()
    assert by_id[0]["paper"]["id"] == target["id"] and by_id[0]["reason"] == "the identifier you searched for"
    for q in ['"', "NEAR(", "*", "AND", "'; DROP TABLE papers; --", "x" * 10_000, "🙂 ünïcödé", "\x00"]:
        r = client.get("/api/papers/search", params={"q": q})
        assert r.status_code == 200, (q[:20], r.text[:200])
    assert_error(client.get("/api/papers/search"), 400)
    filtered = client.get("/api/papers/search", params={"q": "language models", "category": "cs.CL",
                                                        "since": "2026-07-01", "limit": 50}).json()
    assert filtered and all("cs.CL" in h["paper"]["categories"] and h["paper"]["listed"] >= "2026-07-01"
                            for h in filtered)
    assert_error(client.get("/api/papers/search", params={"q": "x", "since": "July"}), 400)


def test_author_endpoint(client):
    paper = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]
    name = paper["authors"][0]["name"]
    papers = client.get(f"/api/authors/{name}").json()
    assert paper["id"] in {p["paper"]["id"] for p in papers}
    assert_error(client.get("/api/authors/Nobody At All"), 404)


def test_openapi_documents_every_api_route_and_nothing_else(app, client):
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {(p.replace("{ref}", "{ref:path}").replace("{name}", "{name:path}").replace("{cid}", "{cid:int}")
                   .replace("{value}", "{value:path}"), m) for p, m, *_ in ENDPOINTS}
    routed = {(r.path, m.lower()) for r in app.routes if getattr(r, "path", "").startswith("/api/")
              for m in (r.methods or ()) if m != "HEAD"}
    assert documented == routed
    assert set(doc["paths"]) == {p for p, *_ in ENDPOINTS}


# -- writing: auth, CSRF, ownership --------------------------------------------------------------

def test_changes_need_a_login(client):
    ref = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]
    assert_error(client.post(f"/api/papers/{ref}/upvote", headers={"authorization": "Bearer nope"}), 401)
    assert_error(client.get("/api/collections", headers={"authorization": "Bearer nope"}), 401)
    assert_error(client.get("/api/me"), 401)


def test_session_requests_need_the_csrf_token(client):
    csrf = signup(client)
    ref = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]
    body = assert_error(client.post(f"/api/papers/{ref}/upvote"), 403)
    assert "CSRF" in body["error"]
    assert_error(client.post(f"/api/papers/{ref}/upvote", headers={"x-csrf-token": "forged"}), 403)
    ok = client.post(f"/api/papers/{ref}/upvote", headers={"x-csrf-token": csrf})
    assert ok.status_code == 200 and ok.json()["upvotes"] == 1
    assert client.get(f"/api/papers/{ref}").json()["upvoted"] is True


def test_votes_count_once_per_account_and_can_be_taken_back(client):
    csrf = signup(client)
    token = api_token(client, csrf)
    auth = {"authorization": f"Bearer {token}"}
    ref = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]
    for _ in range(5):
        r = client.post(f"/api/papers/{ref}/upvote", headers=auth)
        assert r.status_code == 200
    assert r.json()["upvotes"] == 1
    assert client.delete(f"/api/papers/{ref}/upvote", headers=auth).json()["upvotes"] == 0
    assert client.post(f"/api/papers/{ref}/save", headers=auth).json()["saves"] == 1
    assert client.post(f"/api/papers/{ref}/view", headers=auth).json() == {"ok": True}
    me = client.get("/api/me", headers=auth).json()
    assert me["username"] == "ada" and me["via"] == "token"
    assert_error(client.post("/api/papers/2606.99999/upvote", headers=auth), 404)


def test_collections_and_another_readers_collection(app):
    with TestClient(app) as ada, TestClient(app) as bob:
        ada_auth = {"authorization": f"Bearer {api_token(ada, signup(ada, 'ada'))}"}
        bob_auth = {"authorization": f"Bearer {api_token(bob, signup(bob, 'bob'))}"}
        ref = ada.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]
        made = ada.post("/api/collections", json={"name": "Reading group"}, headers=ada_auth)
        assert made.status_code == 201
        cid = made.json()["id"]
        assert ada.post(f"/api/collections/{cid}/papers", json={"paper": ref}, headers=ada_auth).json()["ok"]
        got = ada.get(f"/api/collections/{cid}", headers=ada_auth).json()
        assert got["name"] == "Reading group" and [i["paper"]["id"] for i in got["items"]] == [ref]
        # bob sees, changes and deletes nothing of ada's: answered as if it did not exist
        assert_error(bob.get(f"/api/collections/{cid}", headers=bob_auth), 404)
        assert_error(bob.post(f"/api/collections/{cid}/papers", json={"paper": ref}, headers=bob_auth), 404)
        assert_error(bob.delete(f"/api/collections/{cid}", headers=bob_auth), 404)
        assert bob.get("/api/collections", headers=bob_auth).json() == []
        assert len(ada.get(f"/api/collections/{cid}", headers=ada_auth).json()["items"]) == 1
        # bad bodies
        assert_error(ada.post("/api/collections", content=b"{not json", headers={**ada_auth, "content-type":
                                                                                    "application/json"}), 400)
        assert_error(ada.post("/api/collections", json=["a list"], headers=ada_auth), 400)
        assert_error(ada.post("/api/collections", json={"name": ""}, headers=ada_auth), 400)
        assert_error(ada.post("/api/collections", json={"name": "Reading group"}, headers=ada_auth), 409)
        assert_error(ada.post(f"/api/collections/{cid}/papers", json={}, headers=ada_auth), 400)
        assert_error(ada.post("/api/collections", content=b"x" * 300_000, headers={**ada_auth, "content-type":
                                                                                      "application/json"}), 413)
        assert ada.delete(f"/api/collections/{cid}/papers/{ref}", headers=ada_auth).json()["in_collection"] is False
        assert ada.delete(f"/api/collections/{cid}", headers=ada_auth).json() == {"ok": True}
        assert_error(ada.get(f"/api/collections/{cid}", headers=ada_auth), 404)


def test_export_holds_what_the_reader_did_and_no_secrets(client):
    csrf = signup(client)
    token = api_token(client, csrf, "exporter")
    auth = {"authorization": f"Bearer {token}"}
    ref = client.get("/api/daily_papers", params={"limit": 1}).json()[0]["paper"]["id"]
    client.post(f"/api/papers/{ref}/save", headers=auth)
    data = client.get("/api/me/export", headers=auth).json()
    assert data["account"]["username"] == "ada"
    assert [(i["paper"], i["kind"]) for i in data["interactions"]] == [(ref, "save")]
    assert data["api_tokens"][0]["name"] == "exporter"
    assert token not in str(data) and "hash" not in str(data).lower()


def test_revoked_token_stops_working(client):
    csrf = signup(client)
    token = api_token(client, csrf)
    auth = {"authorization": f"Bearer {token}"}
    assert client.get("/api/me", headers=auth).status_code == 200
    page = client.get("/account")
    tid = page.text.split('action="/account/tokens/')[1].split("/")[0]
    assert client.post(f"/account/tokens/{tid}/delete", data={"csrf_token": csrf}).status_code == 200
    assert_error(client.get("/api/me", headers=auth), 401)


def test_votes_are_rate_limited_per_account_and_the_library_lists_them(client):
    auth = {"authorization": f"Bearer {api_token(client, signup(client))}"}
    refs = [x["paper"]["id"] for x in client.get("/api/daily_papers", params={"limit": 3}).json()]
    client.post(f"/api/papers/{refs[0]}/save", headers=auth)
    client.post(f"/api/papers/{refs[1]}/upvote", headers=auth)
    lib = client.get("/api/library", headers=auth).json()
    assert [r["paper"]["id"] for r in lib["saved"]] == [refs[0]] and [r["paper"]["id"] for r in lib["upvoted"]] == [refs[1]]
    codes = [client.post(f"/api/papers/{refs[2]}/upvote", headers=auth).status_code for _ in range(120)]
    assert codes[:118] == [200] * 118 and codes[-1] == 429  # 120 a minute, two used above
    assert_error(client.post(f"/api/papers/{refs[2]}/upvote", headers=auth), 429)
