"""The SQLite catalog's reader tables: users, interactions, collections, email subscriptions.

A mixin of SQLiteStore (it uses the store's `conn` and `_tx`), kept apart so each file reads on its own.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Sequence

from papersift.errors import BadInput, Conflict, NotFound
from papersift.models import INTERACTION_KINDS, Paper, User
from papersift.store.base import Subscription
from papersift.store.sqlite_rows import _P_COLUMNS, _now, _row_to_paper


class ReaderTables:
    # -- readers -------------------------------------------------------------------------------
    def create_user(self, username: str, email: str | None = None, password_hash: str | None = None) -> User:
        username = username.strip()
        if not username:
            raise BadInput("a username cannot be empty")
        try:
            cur = self.conn.execute(
                "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (username, email, password_hash, _now()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"the username or email of {username!r} is taken") from None
        return self.get_user(cur.lastrowid)

    def get_user(self, ref: int | str) -> User:
        column = "id" if isinstance(ref, int) else ("email" if "@" in ref else "username")
        row = self.conn.execute(f"SELECT id, username, email, created_at FROM users WHERE {column} = ?", (ref,)).fetchone()
        if row is None:
            raise NotFound(f"no user {ref!r}")
        return User(id=row[0], username=row[1], email=row[2], created=dt.datetime.fromisoformat(row[3]))

    def get_password_hash(self, user_id: int) -> str | None:
        row = self.conn.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
        return row[0] if row else None

    def delete_user(self, user_id: int) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))

    def add_interaction(self, user_id: int, paper_id: int, kind: str, at: dt.datetime | None = None) -> bool:
        """Record an interaction; an upvote/save/dismiss already there is left alone (returns False)."""
        if kind not in INTERACTION_KINDS:
            raise BadInput(f"unknown interaction {kind!r}", hint=f"one of {', '.join(INTERACTION_KINDS)}")
        at_s = (at or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
        try:
            cur = self.conn.execute(
                "INSERT INTO interactions (user_id, paper_id, kind, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (user_id, paper_id, kind, at_s),
            )
        except sqlite3.IntegrityError:
            raise NotFound(f"no user {user_id} or paper {paper_id}") from None
        return cur.rowcount == 1

    def remove_interaction(self, user_id: int, paper_id: int, kind: str) -> bool:
        cur = self.conn.execute(
            "DELETE FROM interactions WHERE user_id = ? AND paper_id = ? AND kind = ?", (user_id, paper_id, kind)
        )
        return cur.rowcount > 0

    def interactions(self, user_id: int | None = None, kinds: Sequence[str] | None = None,
                     since: dt.datetime | None = None) -> list[tuple[int, int, str, str]]:
        """(user_id, paper_id, kind, at) tuples, oldest first."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if since is not None:
            where.append("at >= ?")
            args.append(since.isoformat(timespec="seconds"))
        sql = "SELECT user_id, paper_id, kind, at FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [tuple(r) for r in self.conn.execute(sql + " ORDER BY at, id", args)]

    def interaction_counts(self, paper_id: int) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT kind, count(*) FROM interactions WHERE paper_id = ? GROUP BY kind", (paper_id,)
        ).fetchall()
        counts = {k: 0 for k in INTERACTION_KINDS}
        counts.update(dict(rows))
        return counts

    def co_interactions(self, paper_id: int, limit: int = 50, min_readers: int = 2) -> list[tuple[int, int]]:
        """(other paper id, readers) for the papers most often saved or upvoted by the readers who saved
        or upvoted `paper_id`, most shared first. Pairs shared by fewer than `min_readers` readers are
        left out: "readers also saved" must never point at what one person reads."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT b.paper_id, count(DISTINCT b.user_id) AS n FROM interactions a "
            "JOIN interactions b ON b.user_id = a.user_id AND b.paper_id != a.paper_id "
            "AND b.kind IN ('save', 'upvote') WHERE a.paper_id = ? AND a.kind IN ('save', 'upvote') "
            "GROUP BY b.paper_id HAVING n >= ? ORDER BY n DESC, b.paper_id LIMIT ?",
            (paper_id, min_readers, limit))]

    # -- collections ---------------------------------------------------------------------------
    def create_collection(self, user_id: int, name: str, description: str = "") -> int:
        name = name.strip()
        if not name:
            raise BadInput("a collection needs a name")
        try:
            cur = self.conn.execute(
                "INSERT INTO collections (user_id, name, description, created_at) VALUES (?, ?, ?, ?)",
                (user_id, name, description, _now()),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"you already have a collection named {name!r}") from None
        return cur.lastrowid

    def _own_collection(self, user_id: int, collection_id: int) -> None:
        # Someone else's collection is answered exactly like a missing one: no id probing.
        row = self.conn.execute(
            "SELECT 1 FROM collections WHERE id = ? AND user_id = ?", (collection_id, user_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"no collection {collection_id}")

    def collections(self, user_id: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT c.id, c.name, c.description, c.created_at, count(i.paper_id) FROM collections c "
            "LEFT JOIN collection_items i ON i.collection_id = c.id WHERE c.user_id = ? "
            "GROUP BY c.id ORDER BY c.name",
            (user_id,),
        ).fetchall()
        return [dict(id=r[0], name=r[1], description=r[2], created_at=r[3], size=r[4]) for r in rows]

    def add_to_collection(self, user_id: int, collection_id: int, paper_id: int) -> bool:
        self._own_collection(user_id, collection_id)
        try:
            cur = self.conn.execute(
                "INSERT INTO collection_items VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (collection_id, paper_id, _now()),
            )
        except sqlite3.IntegrityError:
            raise NotFound(f"no paper {paper_id}") from None
        return cur.rowcount == 1

    def remove_from_collection(self, user_id: int, collection_id: int, paper_id: int) -> bool:
        self._own_collection(user_id, collection_id)
        cur = self.conn.execute(
            "DELETE FROM collection_items WHERE collection_id = ? AND paper_id = ?", (collection_id, paper_id)
        )
        return cur.rowcount > 0

    def collection_papers(self, user_id: int, collection_id: int) -> list[Paper]:
        self._own_collection(user_id, collection_id)
        rows = self.conn.execute(
            f"SELECT {_P_COLUMNS} FROM collection_items i JOIN papers p ON p.id = i.paper_id "
            "WHERE i.collection_id = ? ORDER BY i.added_at DESC, p.id DESC",
            (collection_id,),
        )
        return [_row_to_paper(r) for r in rows]

    def delete_collection(self, user_id: int, collection_id: int) -> None:
        self._own_collection(user_id, collection_id)
        self.conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    # -- subscriptions -------------------------------------------------------------------------
    @staticmethod
    def _subscription(row) -> Subscription:
        return Subscription(id=row[0], email=row[1], frequency=row[2], categories=tuple(row[3].split()),
                            status=row[4], user_id=row[5], created_at=row[6], confirmed_at=row[7],
                            last_sent_at=row[8])

    _SUB_COLUMNS = "id, email, frequency, categories, status, user_id, created_at, confirmed_at, last_sent_at"

    def upsert_subscription(self, email: str, frequency: str, categories: Sequence[str] = (),
                            user_id: int | None = None, status: str = "pending") -> Subscription:
        if frequency not in ("daily", "weekly"):
            raise BadInput(f"frequency must be daily or weekly, not {frequency!r}")
        if "@" not in email:
            raise BadInput(f"not an email address: {email!r}")
        self.conn.execute(
            "INSERT INTO subscriptions (email, frequency, categories, status, user_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET frequency = excluded.frequency, "
            "categories = excluded.categories, user_id = coalesce(excluded.user_id, user_id)",
            (email.strip(), frequency, " ".join(categories), status, user_id, _now()),
        )
        sub = self.get_subscription(email)
        assert sub is not None
        return sub

    def get_subscription(self, email: str) -> Subscription | None:
        row = self.conn.execute(
            f"SELECT {self._SUB_COLUMNS} FROM subscriptions WHERE email = ?", (email.strip(),)
        ).fetchone()
        return self._subscription(row) if row else None

    def set_subscription_status(self, email: str, status: str) -> None:
        if status not in ("pending", "active", "unsubscribed"):
            raise BadInput(f"unknown subscription status {status!r}")
        confirmed = _now() if status == "active" else None
        cur = self.conn.execute(
            "UPDATE subscriptions SET status = ?, confirmed_at = coalesce(?, confirmed_at) WHERE email = ?",
            (status, confirmed, email.strip()),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no subscription for {email!r}")

    def subscriptions(self, status: str | None = None) -> list[Subscription]:
        sql = f"SELECT {self._SUB_COLUMNS} FROM subscriptions"
        args: tuple = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        return [self._subscription(r) for r in self.conn.execute(sql + " ORDER BY id", args)]
