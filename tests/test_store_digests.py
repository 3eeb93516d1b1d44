"""The Store's mailings, which make notify's digests go out once per period: claims, leases, takeover,
release, finish, and the papers never to mail again. Run against every backend, like the contract suite."""

from __future__ import annotations

import datetime as dt

import pytest

from papersift.errors import BadInput, NotFound
from papersift.models import Paper
from papersift.store import open_store


def _sqlite(tmp_path):
    return open_store(str(tmp_path / "digests.db"), migrate=True)


def _postgresql(tmp_path):
    from test_store_contract import _postgresql as contract_postgresql

    return contract_postgresql(tmp_path)


BACKENDS = {"sqlite": _sqlite, "postgresql": _postgresql}

T0 = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.timezone.utc)
LEASE = dt.timedelta(minutes=10)


@pytest.fixture(params=sorted(BACKENDS))
def db(request, tmp_path):
    store = BACKENDS[request.param](tmp_path)
    yield store
    store.close()


@pytest.fixture
def sub(db):
    return db.upsert_subscription("ada@example.org", "daily", ["cs.CL"], status="active")


def claim(db, sub_id, owner, at=T0, period="2026-07-01", kind="digest", message=b"the message", papers=(1, 2)):
    return db.claim_mailing(sub_id, kind, period, owner, now=at, lease_until=at + LEASE, message_id="<m@x>",
                            message=message, paper_ids=papers, through=dt.date(2026, 6, 30))


def test_a_claim_holds_the_message_and_a_period_is_claimed_once(db, sub):
    first = claim(db, sub.id, "run-1")
    assert first["resumed"] is False and first["status"] == "claimed" and first["owner"] == "run-1"
    assert (first["message"], first["paper_ids"], first["through"]) == (b"the message", [1, 2], "2026-06-30")
    # a second run, even with other contents, gets nothing while the first run's lease is live
    assert claim(db, sub.id, "run-2", message=b"another digest", papers=(3,)) is None
    # the same run asking again keeps its claim, and the contents stay the first ones
    again = claim(db, sub.id, "run-1", message=b"another digest")
    assert again["resumed"] is True and again["message"] == b"the message"
    # other periods and kinds are claimed independently
    assert claim(db, sub.id, "run-2", period="2026-07-02")["resumed"] is False
    assert claim(db, sub.id, "run-2", kind="confirm")["resumed"] is False


def test_a_lapsed_lease_is_taken_over_with_the_stored_message(db, sub):
    claim(db, sub.id, "crashed-run")
    later = T0 + LEASE + dt.timedelta(seconds=1)
    taken = claim(db, sub.id, "run-2", at=later, message=None)
    assert taken["resumed"] is True and taken["owner"] == "run-2" and taken["message"] == b"the message"
    assert not db.renew_mailing(sub.id, "digest", "2026-07-01", "crashed-run", later + LEASE)
    assert db.renew_mailing(sub.id, "digest", "2026-07-01", "run-2", later + LEASE)


def test_release_frees_the_claim_at_once_and_counts_the_attempt(db, sub):
    claim(db, sub.id, "run-1")
    assert not db.release_mailing(sub.id, "digest", "2026-07-01", "someone-else", T0)
    assert db.release_mailing(sub.id, "digest", "2026-07-01", "run-1", T0, "421 try later")
    row = db.get_mailing(sub.id, "digest", "2026-07-01")
    assert (row["status"], row["owner"], row["attempts"], row["error"]) == ("claimed", None, 1, "421 try later")
    taken = claim(db, sub.id, "run-2", message=None)  # no waiting for the lease
    assert taken["message"] == b"the message" and taken["owner"] == "run-2"


def test_finish_records_the_outcome_once_and_frees_the_bytes(db, sub):
    claim(db, sub.id, "run-1")
    sent_at = T0 + dt.timedelta(seconds=3)
    assert db.finish_mailing(sub.id, "digest", "2026-07-01", "sent", sent_at)
    assert not db.finish_mailing(sub.id, "digest", "2026-07-01", "sent", sent_at)  # nothing left to finish
    row = db.get_mailing(sub.id, "digest", "2026-07-01")
    assert (row["status"], row["message"], row["owner"], row["attempts"]) == ("sent", None, None, 1)
    assert row["sent_at"].startswith("2026-07-01T08:00:03")
    assert db.get_subscription("ada@example.org").last_sent_at.startswith("2026-07-01T08:00:03")
    # a finished period is never claimed again, not even after the lease
    assert claim(db, sub.id, "run-2", at=T0 + 10 * LEASE) is None
    assert claim(db, sub.id, "run-2", at=T0 + 10 * LEASE, message=None) is None
    with pytest.raises(BadInput):
        db.finish_mailing(sub.id, "digest", "2026-07-01", "claimed", T0)


def test_a_confirmation_does_not_count_as_a_digest(db, sub):
    claim(db, sub.id, "run-1", kind="confirm", period="2026-06-30")
    db.finish_mailing(sub.id, "confirm", "2026-06-30", "sent", T0)
    assert db.get_subscription("ada@example.org").last_sent_at is None


def test_papers_mailed_are_those_of_sent_and_unfinished_digests(db, sub):
    claim(db, sub.id, "r", period="2026-06-29", papers=(1, 2))
    db.finish_mailing(sub.id, "digest", "2026-06-29", "sent", T0)
    claim(db, sub.id, "r", period="2026-06-30", papers=(3,))  # unfinished: it will be resent
    claim(db, sub.id, "r", period="2026-07-01", papers=(4,))
    db.finish_mailing(sub.id, "digest", "2026-07-01", "failed", T0, "550 no such user")  # never reached them
    claim(db, sub.id, "r", kind="confirm", papers=(5,))
    assert db.mailed_paper_ids(sub.id) == {1, 2, 3}
    other = db.upsert_subscription("bob@example.org", "weekly")
    assert db.mailed_paper_ids(other.id) == set()


def test_mailings_are_listed_newest_first_without_their_bytes(db, sub):
    claim(db, sub.id, "r", period="2026-06-30", at=T0)
    claim(db, sub.id, "r", period="2026-07-01", at=T0 + dt.timedelta(days=1))
    claim(db, sub.id, "r", kind="confirm", at=T0 - dt.timedelta(days=1))
    rows = db.mailings(sub.id)
    assert [(r["kind"], r["period"]) for r in rows] == [("digest", "2026-07-01"), ("digest", "2026-06-30"),
                                                        ("confirm", "2026-07-01")]
    assert all("message" not in r for r in rows)
    assert [r["period"] for r in db.mailings(sub.id, "digest")] == ["2026-07-01", "2026-06-30"]
    with pytest.raises(BadInput):
        db.mailings(sub.id, "newsletter")


def test_claims_need_a_subscription_and_go_with_it(db, sub):
    with pytest.raises(NotFound):
        claim(db, 999, "r")
    user = db.create_user("ada", "ada@example.org")
    db.upsert_subscription("ada@example.org", "daily", user_id=user.id)
    db.upsert_papers([Paper(title="A paper", arxiv_id="2607.00001", source="test")])
    claim(db, sub.id, "r")
    db.delete_user(user.id)  # the subscription goes with the account, and its mailings with it
    assert db.get_subscription("ada@example.org") is None
    assert db.mailings(sub.id) == [] and db.mailed_paper_ids(sub.id) == set()
