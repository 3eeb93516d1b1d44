"""The SQLite catalog's account tables: log-in sessions, API tokens, and the engagement counts
that trending reads. A mixin of SQLiteStore, like sqlite_readers.py.

Tokens arrive here already hashed (web/auth.py hashes them): the catalog never holds a usable secret.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from typing import Sequence

from papersift.errors import BadInput, NotFound
from papersift.models import INTERACTION_KINDS, User
from papersift.store.sqlite_rows import _now


def _ts(at: dt.datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _user(row) -> User:
    return User(id=row[0], username=row[1], email=row[2], created=dt.datetime.fromisoformat(row[3]))


class AccountTables:
    # -- signing keys --------------------------------------------------------------------------
    def secret(self, name: str) -> str:
        """A random key kept in the catalog, made on first use; every worker reads the same one."""
        self.conn.execute("INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                          (name, secrets.token_urlsafe(32), _now()))
        return self.conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0]

    # -- passwords -----------------------------------------------------------------------------
    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        cur = self.conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
        if cur.rowcount == 0:
            raise NotFound(f"no user {user_id}")

    # -- sessions ------------------------------------------------------------------------------
    def create_session(self, user_id: int, token_hash: str, expires: dt.datetime) -> None:
        try:
            self.conn.execute("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                              (token_hash, user_id, _now(), _ts(expires)))
        except sqlite3.IntegrityError:
            raise NotFound(f"no user {user_id}") from None

    def session_user(self, token_hash: str, now: dt.datetime | None = None) -> User | None:
        """The user of a live session, None for an unknown or expired one (which is deleted)."""
        row = self.conn.execute(
            "SELECT u.id, u.username, u.email, u.created_at, s.expires_at FROM sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        if row[4] <= _ts(now or dt.datetime.now(dt.timezone.utc)):
            self.conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
            return None
        return _user(row)

    def delete_session(self, token_hash: str) -> None:
        self.conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def delete_sessions(self, user_id: int, keep: str | None = None) -> int:
        """Log a user out everywhere (but the session `keep`, when given); returns how many ended."""
        cur = self.conn.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?", (user_id, keep or ""))
        return cur.rowcount

    # -- API tokens ----------------------------------------------------------------------------
    def create_api_token(self, user_id: int, name: str, token_hash: str) -> int:
        name = name.strip()
        if not name:
            raise BadInput("an API token needs a name", hint="say what script will use it")
        try:
            cur = self.conn.execute(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (user_id, name[:100], token_hash, _now()))
        except sqlite3.IntegrityError:
            raise NotFound(f"no user {user_id}") from None
        return cur.lastrowid

    def api_tokens(self, user_id: int) -> list[dict]:
        return [{"id": r[0], "name": r[1], "created_at": r[2], "last_used_at": r[3]} for r in self.conn.execute(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = ? ORDER BY id", (user_id,))]

    def token_user(self, token_hash: str) -> User | None:
        row = self.conn.execute(
            "SELECT u.id, u.username, u.email, u.created_at, t.id, t.last_used_at FROM api_tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        now = _now()
        if (row[5] or "")[:13] != now[:13]:  # last use kept to the hour: no write on every request
            self.conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row[4]))
        return _user(row)

    def delete_api_token(self, user_id: int, token_id: int) -> None:
        cur = self.conn.execute("DELETE FROM api_tokens WHERE id = ? AND user_id = ?", (token_id, user_id))
        if cur.rowcount == 0:
            raise NotFound(f"no API token {token_id}")

    # -- engagement (trending) -----------------------------------------------------------------
    def engagement(self, since: dt.datetime | None = None, until: dt.datetime | None = None,
                   paper_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
        """Per paper, how many distinct readers upvoted, saved, viewed or dismissed it in [since, until):
        a reader counts once per kind, however often they repeat it."""
        where, args = [], []
        if since is not None:
            where.append("at >= ?")
            args.append(_ts(since))
        if until is not None:
            where.append("at < ?")
            args.append(_ts(until))
        if paper_ids is not None:
            ids = sorted({int(i) for i in paper_ids})
            if not ids:
                return {}
            where.append("paper_id IN (SELECT value FROM json_each(?))")
            args.append("[" + ",".join(map(str, ids)) + "]")
        sql = "SELECT paper_id, kind, count(DISTINCT user_id) FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        out: dict[int, dict[str, int]] = {}
        for pid, kind, n in self.conn.execute(sql + " GROUP BY paper_id, kind", args):
            out.setdefault(pid, dict.fromkeys(INTERACTION_KINDS, 0))[kind] = n
        return out
