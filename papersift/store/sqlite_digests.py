"""The SQLite catalog's mailings table: each confirmation request and digest sent to a subscription,
claimed before it goes to the SMTP server and marked sent after. A mixin of SQLiteStore, like
sqlite_accounts.py.

The rows are what makes a digest go out once per (subscription, period) across crashes and reruns
(notify/send.py tells the whole story): a claim is an insert keyed by (subscription, kind, period),
so two runs can never both start the same period's mail, and it carries the exact message, so a run
that takes over a crashed run's claim resends those bytes, with the same Message-ID.

Mailings are plain dicts (like `api_tokens`): subscription_id, kind, period, status (claimed, sent,
failed), message_id, message (bytes, or None once finished; left out of `mailings()`), paper_ids
(list of row ids), through (ISO day or None), owner, lease_until, attempts, claimed_at, sent_at, error.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Sequence

from papersift.errors import BadInput, NotFound
from papersift.store.sqlite_accounts import _ts

KINDS = ("confirm", "digest")
_COLUMNS = ("subscription_id, kind, period, status, message_id, paper_ids, through, owner, lease_until, attempts, "
            "claimed_at, sent_at, error")


def _mailing(row, message: bytes | None = None, with_message: bool = False) -> dict:
    out = dict(zip([c.strip() for c in _COLUMNS.split(",")], row))
    out["paper_ids"] = json.loads(out["paper_ids"])
    if with_message:
        out["message"] = bytes(message) if message is not None else None
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise BadInput(f"unknown mailing kind {kind!r}", hint=f"one of {', '.join(KINDS)}")


class DigestTables:
    _KEY = "subscription_id = ? AND kind = ? AND period = ?"

    def get_mailing(self, subscription_id: int, kind: str, period: str) -> dict | None:
        row = self.conn.execute(f"SELECT {_COLUMNS}, message FROM mailings WHERE {self._KEY}",
                                (subscription_id, kind, period)).fetchone()
        return _mailing(row[:-1], row[-1], with_message=True) if row else None

    def mailings(self, subscription_id: int, kind: str | None = None) -> list[dict]:
        """A subscription's mailings, newest claim first, without the message bytes."""
        sql, args = f"SELECT {_COLUMNS} FROM mailings WHERE subscription_id = ?", [subscription_id]
        if kind is not None:
            _check_kind(kind)
            sql += " AND kind = ?"
            args.append(kind)
        return [_mailing(r) for r in self.conn.execute(sql + " ORDER BY claimed_at DESC, period DESC", args)]

    def claim_mailing(self, subscription_id: int, kind: str, period: str, owner: str, *, now: dt.datetime,
                      lease_until: dt.datetime, message_id: str, message: bytes | None,
                      paper_ids: Sequence[int] = (), through: dt.date | None = None) -> dict | None:
        """Claim (subscription, kind, period) for the run `owner`, in one transaction. Returns the mailing
        to send: a new one holding `message`, or an earlier unfinished claim whose lease ran out (or
        was released), with ITS stored message, which the caller must send instead of a new one
        (`resumed` is True then). None when that period's mail is finished (sent or failed) or another
        run holds a live lease on it."""
        _check_kind(kind)
        with self._tx() as conn:
            row = conn.execute(f"SELECT {_COLUMNS}, message FROM mailings WHERE {self._KEY}",
                               (subscription_id, kind, period)).fetchone()
            if row is None:
                if message is None:
                    return None  # only resuming, and there is nothing to resume
                try:
                    conn.execute(
                        "INSERT INTO mailings (subscription_id, kind, period, status, message_id, message, paper_ids, "
                        "through, owner, lease_until, claimed_at) VALUES (?, ?, ?, 'claimed', ?, ?, ?, ?, ?, ?, ?)",
                        (subscription_id, kind, period, message_id, message, json.dumps([int(i) for i in paper_ids]),
                         through.isoformat() if through else None, owner, _ts(lease_until), _ts(now)))
                except sqlite3.IntegrityError:  # a foreign-key failure: the subscription is gone
                    raise NotFound(f"no subscription {subscription_id}") from None
                out = _mailing(conn.execute(f"SELECT {_COLUMNS} FROM mailings WHERE {self._KEY}",
                                            (subscription_id, kind, period)).fetchone(), message, True)
                out["resumed"] = False
                return out
            found = _mailing(row[:-1], row[-1], with_message=True)
            if found["status"] != "claimed":
                return None
            if found["owner"] != owner and found["lease_until"] and found["lease_until"] > _ts(now):
                return None  # a live run is sending it
            conn.execute(f"UPDATE mailings SET owner = ?, lease_until = ? WHERE {self._KEY}",
                         (owner, _ts(lease_until), subscription_id, kind, period))
            found.update(owner=owner, lease_until=_ts(lease_until), resumed=True)
            return found

    def renew_mailing(self, subscription_id: int, kind: str, period: str, owner: str, lease_until: dt.datetime) -> bool:
        """Extend `owner`'s lease on an unfinished claim; False when it is no longer theirs."""
        cur = self.conn.execute(
            f"UPDATE mailings SET lease_until = ? WHERE {self._KEY} AND owner = ? AND status = 'claimed'",
            (_ts(lease_until), subscription_id, kind, period, owner))
        return cur.rowcount == 1

    def release_mailing(self, subscription_id: int, kind: str, period: str, owner: str, now: dt.datetime,
                        error: str | None = None) -> bool:
        """Give up `owner`'s claim without finishing it (a temporary failure, an interrupted run): it stays
        claimed, with its message, and the next run resends it at once."""
        cur = self.conn.execute(
            f"UPDATE mailings SET owner = NULL, lease_until = ?, attempts = attempts + 1, error = coalesce(?, error) "
            f"WHERE {self._KEY} AND owner = ? AND status = 'claimed'",
            (_ts(now), error, subscription_id, kind, period, owner))
        return cur.rowcount == 1

    def finish_mailing(self, subscription_id: int, kind: str, period: str, status: str, at: dt.datetime,
                       error: str | None = None) -> bool:
        """Record a claim's outcome: `sent` (the SMTP server took it; a digest also sets the subscription's
        last_sent_at) or `failed` (refused for good). Whoever holds the lease: the message went out, or
        was refused, either way. False when there was no unfinished claim."""
        if status not in ("sent", "failed"):
            raise BadInput(f"a mailing finishes as sent or failed, not {status!r}")
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE mailings SET status = ?, message = NULL, owner = NULL, lease_until = NULL, "
                f"attempts = attempts + 1, sent_at = ?, error = ? WHERE {self._KEY} AND status = 'claimed'",
                (status, _ts(at) if status == "sent" else None, error, subscription_id, kind, period))
            if cur.rowcount == 1 and status == "sent" and kind == "digest":
                conn.execute("UPDATE subscriptions SET last_sent_at = ? WHERE id = ?", (_ts(at), subscription_id))
            return cur.rowcount == 1

    def mailed_paper_ids(self, subscription_id: int) -> set[int]:
        """Every paper in a digest sent, or being sent, to this subscription: none is mailed to it again.
        A digest refused for good did not reach the reader, so its papers may come again."""
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT j.value FROM mailings m, json_each(m.paper_ids) j "
            "WHERE m.subscription_id = ? AND m.kind = 'digest' AND m.status IN ('claimed', 'sent')", (subscription_id,))}
