"""The PostgreSQL catalog's reader tables: users, interactions, collections, email subscriptions.

A mixin of PostgresStore (it uses the store's `_connection`, `_query`, `_one`, `_rowcount`), answering
as sqlite_readers.py does. Usernames, emails compare without case (unique indexes on lower(…)).
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import psycopg

from papersift.errors import BadInput, Conflict, NotFound
from papersift.models import INTERACTION_KINDS, Paper, User
from papersift.store.base import Subscription
from papersift.store.postgres_rows import P_COLUMNS, iso, now, row_to_paper, utc


def user_from_row(row) -> User:
    return User(id=row[0], username=row[1], email=row[2], created=row[3].astimezone(dt.timezone.utc))


class ReaderTables:
    # -- readers -------------------------------------------------------------------------------
    def create_user(self, username: str, email: str | None = None, password_hash: str | None = None) -> User:
        username = username.strip()
        if not username:
            raise BadInput("a username cannot be empty")
        try:
            row = self._one("INSERT INTO users (username, email, password_hash, created_at) VALUES (%s, %s, %s, %s) "
                            "RETURNING id, username, email, created_at", (username, email, password_hash, now()))
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"the username or email of {username!r} is taken") from None
        return user_from_row(row)

    def get_user(self, ref: int | str) -> User:
        if isinstance(ref, int):
            where = "id = %s"
        else:
            where = "lower(email) = lower(%s)" if "@" in ref else "lower(username) = lower(%s)"
        row = self._one(f"SELECT id, username, email, created_at FROM users WHERE {where}", (ref,))
        if row is None:
            raise NotFound(f"no user {ref!r}")
        return user_from_row(row)

    def get_password_hash(self, user_id: int) -> str | None:
        row = self._one("SELECT password_hash FROM users WHERE id = %s", (user_id,))
        return row[0] if row else None

    def delete_user(self, user_id: int) -> None:
        self._rowcount("DELETE FROM users WHERE id = %s", (user_id,))

    def add_interaction(self, user_id: int, paper_id: int, kind: str, at: dt.datetime | None = None) -> bool:
        """Record an interaction; an upvote/save/dismiss already there is left alone (returns False)."""
        if kind not in INTERACTION_KINDS:
            raise BadInput(f"unknown interaction {kind!r}", hint=f"one of {', '.join(INTERACTION_KINDS)}")
        try:
            n = self._rowcount("INSERT INTO interactions (user_id, paper_id, kind, at) VALUES (%s, %s, %s, %s) "
                               "ON CONFLICT DO NOTHING", (user_id, paper_id, kind, utc(at) if at else now()))
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id} or paper {paper_id}") from None
        return n == 1

    def remove_interaction(self, user_id: int, paper_id: int, kind: str) -> bool:
        return self._rowcount("DELETE FROM interactions WHERE user_id = %s AND paper_id = %s AND kind = %s",
                              (user_id, paper_id, kind)) > 0

    def interactions(self, user_id: int | None = None, kinds: Sequence[str] | None = None,
                     since: dt.datetime | None = None) -> list[tuple[int, int, str, str]]:
        """(user_id, paper_id, kind, at) tuples, oldest first; `at` as ISO UTC text."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id = %s")
            args.append(user_id)
        if kinds:
            where.append("kind = ANY(%s::text[])")
            args.append(list(kinds))
        if since is not None:
            where.append("at >= %s")
            args.append(utc(since))
        sql = "SELECT user_id, paper_id, kind, at FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [(u, p, k, iso(at)) for u, p, k, at in self._query(sql + " ORDER BY at, id", args)]

    def interaction_counts(self, paper_id: int) -> dict[str, int]:
        counts = {k: 0 for k in INTERACTION_KINDS}
        counts.update(dict(self._query(
            "SELECT kind, count(*) FROM interactions WHERE paper_id = %s GROUP BY kind", (paper_id,))))
        return counts

    def co_interactions(self, paper_id: int, limit: int = 50, min_readers: int = 2) -> list[tuple[int, int]]:
        """(other paper id, readers) for the papers most often saved or upvoted by the readers who saved
        or upvoted `paper_id`, most shared first; pairs shared by fewer than `min_readers` left out."""
        return [tuple(r) for r in self._query(
            "SELECT b.paper_id, count(DISTINCT b.user_id) AS n FROM interactions a "
            "JOIN interactions b ON b.user_id = a.user_id AND b.paper_id <> a.paper_id "
            "AND b.kind IN ('save', 'upvote') WHERE a.paper_id = %s AND a.kind IN ('save', 'upvote') "
            "GROUP BY b.paper_id HAVING count(DISTINCT b.user_id) >= %s ORDER BY n DESC, b.paper_id LIMIT %s",
            (paper_id, min_readers, limit))]

    # -- collections ---------------------------------------------------------------------------
    def create_collection(self, user_id: int, name: str, description: str = "") -> int:
        name = name.strip()
        if not name:
            raise BadInput("a collection needs a name")
        try:
            return self._one("INSERT INTO collections (user_id, name, description, created_at) "
                             "VALUES (%s, %s, %s, %s) RETURNING id", (user_id, name, description, now()))[0]
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"you already have a collection named {name!r}") from None
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None

    @staticmethod
    def _own_collection(conn, user_id: int, collection_id: int) -> None:
        # Someone else's collection is answered exactly like a missing one: no id probing.
        if conn.execute("SELECT 1 FROM collections WHERE id = %s AND user_id = %s",
                        (collection_id, user_id)).fetchone() is None:
            raise NotFound(f"no collection {collection_id}")

    def collections(self, user_id: int) -> list[dict]:
        rows = self._query(
            "SELECT c.id, c.name, c.description, c.created_at, count(i.paper_id) FROM collections c "
            "LEFT JOIN collection_items i ON i.collection_id = c.id WHERE c.user_id = %s "
            'GROUP BY c.id ORDER BY c.name COLLATE "C"', (user_id,))
        return [dict(id=r[0], name=r[1], description=r[2], created_at=iso(r[3]), size=r[4]) for r in rows]

    def add_to_collection(self, user_id: int, collection_id: int, paper_id: int) -> bool:
        with self._connection() as conn:
            self._own_collection(conn, user_id, collection_id)
            try:
                cur = conn.execute("INSERT INTO collection_items VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                   (collection_id, paper_id, now()))
            except psycopg.errors.ForeignKeyViolation:
                raise NotFound(f"no paper {paper_id}") from None
            return cur.rowcount == 1

    def remove_from_collection(self, user_id: int, collection_id: int, paper_id: int) -> bool:
        with self._connection() as conn:
            self._own_collection(conn, user_id, collection_id)
            return conn.execute("DELETE FROM collection_items WHERE collection_id = %s AND paper_id = %s",
                                (collection_id, paper_id)).rowcount > 0

    def collection_papers(self, user_id: int, collection_id: int) -> list[Paper]:
        with self._connection() as conn:
            self._own_collection(conn, user_id, collection_id)
            rows = conn.execute(
                f"SELECT {P_COLUMNS} FROM collection_items i JOIN papers p ON p.id = i.paper_id "
                "WHERE i.collection_id = %s ORDER BY i.added_at DESC, p.id DESC", (collection_id,)).fetchall()
        return [row_to_paper(r) for r in rows]

    def delete_collection(self, user_id: int, collection_id: int) -> None:
        with self._connection() as conn:
            self._own_collection(conn, user_id, collection_id)
            conn.execute("DELETE FROM collections WHERE id = %s", (collection_id,))

    # -- subscriptions -------------------------------------------------------------------------
    @staticmethod
    def _subscription(row) -> Subscription:
        return Subscription(id=row[0], email=row[1], frequency=row[2], categories=tuple(row[3].split()),
                            status=row[4], user_id=row[5], created_at=iso(row[6]), confirmed_at=iso(row[7]),
                            last_sent_at=iso(row[8]))

    _SUB_COLUMNS = "id, email, frequency, categories, status, user_id, created_at, confirmed_at, last_sent_at"

    def upsert_subscription(self, email: str, frequency: str, categories: Sequence[str] = (),
                            user_id: int | None = None, status: str = "pending") -> Subscription:
        if frequency not in ("daily", "weekly"):
            raise BadInput(f"frequency must be daily or weekly, not {frequency!r}")
        if "@" not in email:
            raise BadInput(f"not an email address: {email!r}")
        try:
            row = self._one(
                "INSERT INTO subscriptions AS s (email, frequency, categories, status, user_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (lower(email)) DO UPDATE SET "
                "frequency = excluded.frequency, categories = excluded.categories, "
                f"user_id = coalesce(excluded.user_id, s.user_id) RETURNING {self._SUB_COLUMNS}",
                (email.strip(), frequency, " ".join(categories), status, user_id, now()))
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no user {user_id}") from None
        return self._subscription(row)

    def get_subscription(self, email: str) -> Subscription | None:
        row = self._one(f"SELECT {self._SUB_COLUMNS} FROM subscriptions WHERE lower(email) = lower(%s)",
                        (email.strip(),))
        return self._subscription(row) if row else None

    def set_subscription_status(self, email: str, status: str) -> None:
        if status not in ("pending", "active", "unsubscribed"):
            raise BadInput(f"unknown subscription status {status!r}")
        confirmed = now() if status == "active" else None
        n = self._rowcount("UPDATE subscriptions SET status = %s, confirmed_at = coalesce(%s, confirmed_at) "
                           "WHERE lower(email) = lower(%s)", (status, confirmed, email.strip()))
        if n == 0:
            raise NotFound(f"no subscription for {email!r}")

    def subscriptions(self, status: str | None = None) -> list[Subscription]:
        sql = f"SELECT {self._SUB_COLUMNS} FROM subscriptions"
        args: tuple = ()
        if status:
            sql += " WHERE status = %s"
            args = (status,)
        return [self._subscription(r) for r in self._query(sql + " ORDER BY id", args)]
