"""The SQLite catalog's feed tables: a reader's mutes and feed settings (reset time, seed collection,
chosen categories for a cold start). A mixin of SQLiteStore, like sqlite_accounts.py."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Sequence

from papersift.errors import NotFound
from papersift.store.base import MUTE_KINDS, mute_value
from papersift.store.sqlite_rows import _now


class FeedTables:
    def mute(self, user_id: int, kind: str, value: str) -> bool:
        """Mute a keyword, author or category for a reader's feed; False if it already was."""
        value = mute_value(kind, value)
        try:
            cur = self.conn.execute("INSERT INTO mutes (user_id, kind, value, created_at) VALUES (?, ?, ?, ?) "
                                    "ON CONFLICT DO NOTHING", (user_id, kind, value, _now()))
        except sqlite3.IntegrityError:
            raise NotFound(f"no user {user_id}") from None
        return cur.rowcount == 1

    def unmute(self, user_id: int, kind: str, value: str) -> bool:
        cur = self.conn.execute("DELETE FROM mutes WHERE user_id = ? AND kind = ? AND value = ?",
                                (user_id, kind, " ".join(value.split())))
        return cur.rowcount > 0

    def mutes(self, user_id: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in MUTE_KINDS}
        for kind, value in self.conn.execute("SELECT kind, value FROM mutes WHERE user_id = ? ORDER BY kind, value",
                                             (user_id,)):
            out[kind].append(value)
        return out

    def feed_settings(self, user_id: int) -> dict:
        row = self.conn.execute("SELECT reset_at, seed_collection, categories FROM feed_settings WHERE user_id = ?",
                                (user_id,)).fetchone()
        if row is None:
            return {"reset_at": None, "seed_collection": None, "categories": []}
        return {"reset_at": dt.datetime.fromisoformat(row[0]) if row[0] else None, "seed_collection": row[1],
                "categories": row[2].split() if row[2] else []}

    def set_feed_settings(self, user_id: int, *, reset_at: dt.datetime | None | bool = False,
                          seed_collection: int | None | bool = False, categories: Sequence[str] | None = None) -> None:
        """Change what is given (False: leave as is; None: clear)."""
        if seed_collection not in (False, None):
            self._own_collection(user_id, int(seed_collection))
        try:
            self.conn.execute("INSERT INTO feed_settings (user_id) VALUES (?) ON CONFLICT DO NOTHING", (user_id,))
        except sqlite3.IntegrityError:
            raise NotFound(f"no user {user_id}") from None
        if reset_at is not False:
            self.conn.execute("UPDATE feed_settings SET reset_at = ? WHERE user_id = ?",
                              (reset_at.isoformat(timespec="seconds") if reset_at else None, user_id))
        if seed_collection is not False:
            self.conn.execute("UPDATE feed_settings SET seed_collection = ? WHERE user_id = ?", (seed_collection, user_id))
        if categories is not None:
            self.conn.execute("UPDATE feed_settings SET categories = ? WHERE user_id = ?",
                              (" ".join(sorted({c.strip() for c in categories if c.strip()})), user_id))
