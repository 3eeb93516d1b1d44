"""The PostgreSQL catalog's account and feed tables: signing keys, passwords, log-in sessions, API tokens,
engagement counts for trending, a reader's mutes and feed settings. A mixin of PostgresStore, answering
as sqlite_accounts.py and sqlite_feed.py do. Tokens arrive already hashed (web/auth.py hashes them).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Sequence

import psycopg

from papersift.errors import BadInput, NotFound
from papersift.models import INTERACTION_KINDS, User
from papersift.store.base import MUTE_KINDS, mute_value
from papersift.store.postgres_readers import user_from_row
from papersift.store.postgres_rows import iso, utc
from papersift.store.postgres_rows import now as _now


class AccountTables:
    # -- signing keys --------------------------------------------------------------------------
    def secret(self, name: str) -> str:
        """A random key kept in the catalog, made on first use; every worker reads the same one."""
        with self._connection() as conn:
            conn.execute("INSERT INTO secrets (name, value, created_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                         (name, secrets.token_urlsafe(32), _now()))
            return conn.execute("SELECT value FROM secrets WHERE name = %s", (name,)).fetchone()[0]

    # -- passwords -----------------------------------------------------------------------------
    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        if self._rowcount("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id)) == 0:
            raise NotFound(f"no user {user_id}")

    # -- sessions ------------------------------------------------------------------------------
    def create_session(self, user_id: int, token_hash: str, expires: dt.datetime) -> None:
        try:
            self._rowcount("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (%s, %s, %s, %s)",
                           (token_hash, user_id, _now(), utc(expires)))
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None

    def session_user(self, token_hash: str, now: dt.datetime | None = None) -> User | None:
        """The user of a live session, None for an unknown or expired one (which is deleted)."""
        at = now
        with self._connection() as conn:
            row = conn.execute(
                "SELECT u.id, u.username, u.email, u.created_at, s.expires_at FROM sessions s "
                "JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s", (token_hash,)).fetchone()
            if row is None:
                return None
            if row[4] <= utc(at or dt.datetime.now(dt.timezone.utc)):
                conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))
                return None
            return user_from_row(row)

    def delete_session(self, token_hash: str) -> None:
        self._rowcount("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    def delete_sessions(self, user_id: int, keep: str | None = None) -> int:
        """Log a user out everywhere (but the session `keep`, when given); returns how many ended."""
        return self._rowcount("DELETE FROM sessions WHERE user_id = %s AND token_hash <> %s", (user_id, keep or ""))

    # -- API tokens ----------------------------------------------------------------------------
    def create_api_token(self, user_id: int, name: str, token_hash: str) -> int:
        name = name.strip()
        if not name:
            raise BadInput("an API token needs a name", hint="say what script will use it")
        try:
            return self._one("INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (%s, %s, %s, %s) "
                             "RETURNING id", (user_id, name[:100], token_hash, _now()))[0]
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None

    def api_tokens(self, user_id: int) -> list[dict]:
        return [{"id": r[0], "name": r[1], "created_at": iso(r[2]), "last_used_at": iso(r[3])} for r in self._query(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = %s ORDER BY id", (user_id,))]

    def token_user(self, token_hash: str) -> User | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT u.id, u.username, u.email, u.created_at, t.id, t.last_used_at FROM api_tokens t "
                "JOIN users u ON u.id = t.user_id WHERE t.token_hash = %s", (token_hash,)).fetchone()
            if row is None:
                return None
            stamp = _now()
            # last use kept to the hour: no write on every request
            if row[5] is None or row[5].astimezone(dt.timezone.utc).replace(minute=0, second=0) != stamp.replace(
                    minute=0, second=0):
                conn.execute("UPDATE api_tokens SET last_used_at = %s WHERE id = %s", (stamp, row[4]))
            return user_from_row(row)

    def delete_api_token(self, user_id: int, token_id: int) -> None:
        if self._rowcount("DELETE FROM api_tokens WHERE id = %s AND user_id = %s", (token_id, user_id)) == 0:
            raise NotFound(f"no API token {token_id}")

    # -- engagement (trending) -----------------------------------------------------------------
    def engagement(self, since: dt.datetime | None = None, until: dt.datetime | None = None,
                   paper_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
        """Per paper, how many distinct readers upvoted, saved, viewed or dismissed it in [since, until)."""
        where, args = [], []
        if since is not None:
            where.append("at >= %s")
            args.append(utc(since))
        if until is not None:
            where.append("at < %s")
            args.append(utc(until))
        if paper_ids is not None:
            ids = sorted({int(i) for i in paper_ids})
            if not ids:
                return {}
            where.append("paper_id = ANY(%s::bigint[])")
            args.append(ids)
        sql = "SELECT paper_id, kind, count(DISTINCT user_id) FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        out: dict[int, dict[str, int]] = {}
        for pid, kind, n in self._query(sql + " GROUP BY paper_id, kind", args):
            out.setdefault(pid, dict.fromkeys(INTERACTION_KINDS, 0))[kind] = n
        return out

    # -- feed: mutes and settings --------------------------------------------------------------
    def mute(self, user_id: int, kind: str, value: str) -> bool:
        """Mute a keyword, author or category for a reader's feed; False if it already was (any case)."""
        value = mute_value(kind, value)
        try:
            return self._rowcount("INSERT INTO mutes (user_id, kind, value, created_at) VALUES (%s, %s, %s, %s) "
                                  "ON CONFLICT DO NOTHING", (user_id, kind, value, _now())) == 1
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None

    def unmute(self, user_id: int, kind: str, value: str) -> bool:
        return self._rowcount("DELETE FROM mutes WHERE user_id = %s AND kind = %s AND lower(value) = lower(%s)",
                              (user_id, kind, " ".join(value.split()))) > 0

    def mutes(self, user_id: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in MUTE_KINDS}
        for kind, value in self._query('SELECT kind, value FROM mutes WHERE user_id = %s '
                                       'ORDER BY kind, lower(value) COLLATE "C", value COLLATE "C"', (user_id,)):
            out[kind].append(value)
        return out

    def feed_settings(self, user_id: int) -> dict:
        row = self._one("SELECT reset_at, seed_collection, categories FROM feed_settings WHERE user_id = %s",
                        (user_id,))
        if row is None:
            return {"reset_at": None, "seed_collection": None, "categories": []}
        return {"reset_at": row[0].astimezone(dt.timezone.utc) if row[0] else None, "seed_collection": row[1],
                "categories": row[2].split() if row[2] else []}

    def set_feed_settings(self, user_id: int, *, reset_at: dt.datetime | None | bool = False,
                          seed_collection: int | None | bool = False, categories: Sequence[str] | None = None) -> None:
        """Change what is given (False: leave as is; None: clear)."""
        with self._connection() as conn:
            if seed_collection not in (False, None):
                self._own_collection(conn, user_id, int(seed_collection))
            try:
                conn.execute("INSERT INTO feed_settings (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user_id,))
            except psycopg.errors.ForeignKeyViolation:
                raise NotFound(f"no user {user_id}") from None
            if reset_at is not False:
                conn.execute("UPDATE feed_settings SET reset_at = %s WHERE user_id = %s",
                             (utc(reset_at) if reset_at else None, user_id))
            if seed_collection is not False:
                conn.execute("UPDATE feed_settings SET seed_collection = %s WHERE user_id = %s",
                             (seed_collection, user_id))
            if categories is not None:
                conn.execute("UPDATE feed_settings SET categories = %s WHERE user_id = %s",
                             (" ".join(sorted({c.strip() for c in categories if c.strip()})), user_id))
