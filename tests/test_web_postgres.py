"""Many readers voting at once on a real server: `papersift serve --workers 2` as a real process over a
copy of web_data, on PostgreSQL (and on SQLite, whose WAL and busy timeout must not lose a vote either),
and 50 readers, each with an account of their own made through the sign-up page, upvoting and saving the
same few papers at the same moment: repeated identical votes (two at once from one account), votes
taken back and given again. Afterwards the counts the API reports and the rows in the catalog are
exactly what the readers did: nothing lost, nothing counted twice.

Each reader connects from its own loopback address (127.0.0.2, .3, …), as readers on their own machines
would: sign-ups are rate-limited per address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from papersift.store import open_store

READERS = 50
PASSWORD = "correct horse battery"


@contextlib.contextmanager
def serving(settings, workers: int = 2):
    """`papersift serve` over `settings`' catalog and data dir, as a user runs it; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [str(Path(sys.executable).parent / "papersift"), "--data-dir", str(settings.resolved_data_dir),
           "--database-url", settings.resolved_database_url, "--config", "/nonexistent.toml",
           "serve", "--port", str(port), "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERSIFT_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not answer within 90 s"
            try:
                if httpx.get(f"{base}/api/daily_papers?limit=1", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Traceback" not in out, out[-4000:]


class Reader:
    """One reader with an account of their own, on a connection from their own address."""

    def __init__(self, base: str, n: int):
        self.name = f"reader{n:02d}"
        self.n = n
        self.http = httpx.Client(base_url=base, timeout=60,
                                 transport=httpx.HTTPTransport(local_address=f"127.0.0.{n + 2}"))
        self.responses: list[httpx.Response] = []

    def sign_up(self) -> None:
        page = self.http.get("/signup")
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        r = self.http.post("/signup", data={"username": self.name, "password": PASSWORD,
                                            "email": f"{self.name}@example.org", "csrf_token": csrf})
        assert r.status_code == 303, (self.name, r.status_code, r.text[:300])
        if self.n % 2:  # half the readers are scripts with an API token, half a browser's session + CSRF
            r = self.http.post("/account/tokens", data={"name": "votes", "csrf_token": csrf})
            assert r.status_code == 200, r.text[:300]
            token = r.text.split('class="token">')[1].split("<")[0]
            self.http.cookies.clear()
            self.http.headers["authorization"] = f"Bearer {token}"
        else:
            self.http.headers["x-csrf-token"] = csrf

    def mark(self, method: str, ref: str, kind: str) -> dict:
        r = self.http.request(method, f"/api/papers/{ref}/{kind}")
        self.responses.append(r)
        assert r.status_code == 200, (self.name, method, kind, r.status_code, r.text[:300])
        return r.json()

    def plan(self, a: str, b: str, c: str) -> dict[tuple[str, str], bool]:
        """What this reader ends with: (paper, kind) → set or not."""
        return {(a, "upvote"): True, (b, "save"): True, (c, "upvote"): self.n % 3 == 0,
                (a, "save"): self.n % 4 == 2}

    def vote(self, a: str, b: str, c: str) -> None:
        # the same upvote twice at the same moment (a double click; a retried request)
        with ThreadPoolExecutor(2) as pool:
            for got in pool.map(lambda _: self.mark("POST", a, "upvote"), range(2)):
                assert got["upvoted"] is True and 1 <= got["upvotes"] <= READERS
        self.mark("POST", b, "save")
        self.mark("POST", b, "save")  # saved again: changes nothing
        if self.n % 3 == 0:  # toggles: on, off, on
            self.mark("POST", c, "upvote")
            self.mark("DELETE", c, "upvote")
            self.mark("POST", c, "upvote")
        elif self.n % 3 == 1:  # changes their mind: on, off
            self.mark("POST", c, "upvote")
            self.mark("DELETE", c, "upvote")
        if self.n % 2 == 0:
            self.mark("POST", a, "save")
            if self.n % 4 == 0:
                self.mark("DELETE", a, "save")


def _run_all(readers: list[Reader], step) -> None:
    """`step` of every reader, all released at once; the first failure is raised."""
    barrier = threading.Barrier(len(readers))
    errors: list[BaseException] = []

    def run(reader: Reader) -> None:
        try:
            barrier.wait(timeout=60)
            step(reader)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads)


def test_concurrent_votes_from_many_readers_are_counted_exactly(web_settings):
    with serving(web_settings) as base:
        day = httpx.get(f"{base}/api/daily_papers", params={"limit": 3}, timeout=30).json()
        a, b, c = (x["paper"]["id"] for x in day)
        readers = [Reader(base, n) for n in range(READERS)]
        try:
            _run_all(readers, Reader.sign_up)
            _run_all(readers, lambda r: r.vote(a, b, c))
            want: dict[tuple[str, str], int] = {}
            for r in readers:
                for key, on in r.plan(a, b, c).items():
                    want[key] = want.get(key, 0) + on
            assert want[(a, "upvote")] == want[(b, "save")] == READERS and 0 < want[(c, "upvote")] < READERS
            # what the API says, asked several times on fresh connections (so of both workers)
            for _ in range(4):
                for ref in (a, b, c):
                    got = httpx.get(f"{base}/api/papers/{ref}", timeout=30).json()
                    assert (got["upvotes"], got["saves"]) == (want.get((ref, "upvote"), 0),
                                                              want.get((ref, "save"), 0)), ref
            # and each reader's own view of each paper
            for r in readers[:6]:
                for (ref, kind), on in r.plan(a, b, c).items():
                    assert r.http.get(f"/api/papers/{ref}").json()["upvoted" if kind == "upvote" else "saved"] is on
        finally:
            for r in readers:
                r.http.close()
    # the catalog itself: the counts, and every reader's rows, exactly once each
    store = open_store(web_settings.resolved_database_url)
    try:
        ids = {ref: store.get_paper(ref).id for ref in (a, b, c)}
        for ref, pid in ids.items():
            counts = store.interaction_counts(pid)
            assert (counts["upvote"], counts["save"]) == (want.get((ref, "upvote"), 0), want.get((ref, "save"), 0))
        for r in readers:
            rows = [(p, k) for _, p, k, _ in store.interactions(store.get_user(r.name).id)]
            expected = sorted((ids[ref], kind) for (ref, kind), on in r.plan(a, b, c).items() if on)
            assert sorted(rows) == expected, r.name
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _loopback_addresses():
    """Readers bind 127.0.0.2 … : every address of 127.0.0.0/8 is the loopback on Linux, not everywhere."""
    try:
        with socket.socket() as s:
            s.bind((f"127.0.0.{READERS + 1}", 0))
    except OSError as e:
        pytest.skip(f"cannot bind loopback addresses beyond 127.0.0.1 here: {e}")
