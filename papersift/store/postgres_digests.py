"""The PostgreSQL catalog's mailings table: each confirmation request and digest sent to a subscription,
claimed before it goes to the SMTP server and marked sent after. A mixin of PostgresStore answering as
sqlite_digests.py does (that file tells what a mailing dict holds and why). A claim locks its row
(SELECT … FOR UPDATE) or inserts it, so two runs can never both take one period's mail.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import psycopg

from papersift.errors import BadInput, NotFound
from papersift.store.postgres_rows import iso, utc
from papersift.store.sqlite_digests import KINDS, _check_kind

_COLUMNS = ("subscription_id, kind, period, status, message_id, paper_ids, through, owner, lease_until, attempts, "
            "claimed_at, sent_at, error")
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
_KEY = "subscription_id = %s AND kind = %s AND period = %s"

__all__ = ["DigestTables", "KINDS"]


def _mailing(row, message: bytes | None = None, with_message: bool = False) -> dict:
    out = dict(zip(_NAMES, row))
    out["paper_ids"] = [int(i) for i in out["paper_ids"]]
    out["through"] = out["through"].isoformat() if out["through"] else None
    for key in ("lease_until", "claimed_at", "sent_at"):
        out[key] = iso(out[key])
    if with_message:
        out["message"] = bytes(message) if message is not None else None
    return out


class DigestTables:
    def get_mailing(self, subscription_id: int, kind: str, period: str) -> dict | None:
        row = self._one(f"SELECT {_COLUMNS}, message FROM mailings WHERE {_KEY}", (subscription_id, kind, period))
        return _mailing(row[:-1], row[-1], with_message=True) if row else None

    def mailings(self, subscription_id: int, kind: str | None = None) -> list[dict]:
        """A subscription's mailings, newest claim first, without the message bytes."""
        sql, args = f"SELECT {_COLUMNS} FROM mailings WHERE subscription_id = %s", [subscription_id]
        if kind is not None:
            _check_kind(kind)
            sql += " AND kind = %s"
            args.append(kind)
        return [_mailing(r) for r in self._query(sql + ' ORDER BY claimed_at DESC, period COLLATE "C" DESC', args)]

    def claim_mailing(self, subscription_id: int, kind: str, period: str, owner: str, *, now: dt.datetime,
                      lease_until: dt.datetime, message_id: str, message: bytes | None,
                      paper_ids: Sequence[int] = (), through: dt.date | None = None) -> dict | None:
        """Claim (subscription, kind, period) for the run `owner`, in one transaction: see
        SQLiteStore.claim_mailing for what comes back."""
        _check_kind(kind)
        key = (subscription_id, kind, period)
        with self._connection() as conn:
            row = conn.execute(f"SELECT {_COLUMNS}, message FROM mailings WHERE {_KEY} FOR UPDATE", key).fetchone()
            if row is None:
                if message is None:
                    return None  # only resuming, and there is nothing to resume
                try:
                    row = conn.execute(
                        "INSERT INTO mailings (subscription_id, kind, period, status, message_id, message, paper_ids, "
                        "through, owner, lease_until, claimed_at) VALUES (%s, %s, %s, 'claimed', %s, %s, %s::bigint[], "
                        f"%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
                        (*key, message_id, message, [int(i) for i in paper_ids], through, owner, utc(lease_until),
                         utc(now))).fetchone()
                except psycopg.errors.ForeignKeyViolation:
                    raise NotFound(f"no subscription {subscription_id}") from None
                if row is None:
                    return None  # another run inserted the claim a moment ago: theirs
                out = _mailing(row, message, True)
                out["resumed"] = False
                return out
            found = _mailing(row[:-1], row[-1], with_message=True)
            if found["status"] != "claimed":
                return None
            if found["owner"] != owner and row[8] is not None and row[8] > utc(now):
                return None  # a live run is sending it
            conn.execute(f"UPDATE mailings SET owner = %s, lease_until = %s WHERE {_KEY}",
                         (owner, utc(lease_until), *key))
            found.update(owner=owner, lease_until=iso(utc(lease_until)), resumed=True)
            return found

    def renew_mailing(self, subscription_id: int, kind: str, period: str, owner: str, lease_until: dt.datetime) -> bool:
        """Extend `owner`'s lease on an unfinished claim; False when it is no longer theirs."""
        return self._rowcount(
            f"UPDATE mailings SET lease_until = %s WHERE {_KEY} AND owner = %s AND status = 'claimed'",
            (utc(lease_until), subscription_id, kind, period, owner)) == 1

    def release_mailing(self, subscription_id: int, kind: str, period: str, owner: str, now: dt.datetime,
                        error: str | None = None) -> bool:
        """Give up `owner`'s claim without finishing it: it stays claimed, with its message."""
        return self._rowcount(
            "UPDATE mailings SET owner = NULL, lease_until = %s, attempts = attempts + 1, "
            f"error = coalesce(%s, error) WHERE {_KEY} AND owner = %s AND status = 'claimed'",
            (utc(now), error, subscription_id, kind, period, owner)) == 1

    def finish_mailing(self, subscription_id: int, kind: str, period: str, status: str, at: dt.datetime,
                       error: str | None = None) -> bool:
        """Record a claim's outcome: `sent` (a digest also sets the subscription's last_sent_at) or `failed`."""
        if status not in ("sent", "failed"):
            raise BadInput(f"a mailing finishes as sent or failed, not {status!r}")
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE mailings SET status = %s, message = NULL, owner = NULL, lease_until = NULL, "
                f"attempts = attempts + 1, sent_at = %s, error = %s WHERE {_KEY} AND status = 'claimed'",
                (status, utc(at) if status == "sent" else None, error, subscription_id, kind, period))
            if cur.rowcount == 1 and status == "sent" and kind == "digest":
                conn.execute("UPDATE subscriptions SET last_sent_at = %s WHERE id = %s", (utc(at), subscription_id))
            return cur.rowcount == 1

    def mailed_paper_ids(self, subscription_id: int) -> set[int]:
        """Every paper in a digest sent, or being sent, to this subscription: none is mailed to it again."""
        return {r[0] for r in self._query(
            "SELECT DISTINCT unnest(paper_ids) FROM mailings WHERE subscription_id = %s AND kind = 'digest' "
            "AND status IN ('claimed', 'sent')", (subscription_id,))}
