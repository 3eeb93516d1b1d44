"""The PostgreSQL catalog (`postgresql://…`): psycopg 3 with a connection pool, full text in tsvector,
vectors in pgvector, versioned migrations under migrations/postgresql/.

It answers exactly as SQLiteStore (the reference): the same row ids, merges, change_seq, checkpoints
and errors. Writes of papers are serialized by a transaction-level advisory lock, as SQLite's
BEGIN IMMEDIATE serializes them: row ids and the batch's change_seq are handed out under it, so a
batch committed later always carries a higher change_seq and an index that syncs on change_seq never
skips a batch. A batch and its resume checkpoint commit together or not at all.

Each method runs on a connection taken from the pool for that call, in one transaction (committed
when the method returns, rolled back on any exception), so a store is safe to share across threads.
Needs the `postgresql` extra: `pip install 'papersift[postgresql]'`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import weakref
from typing import Iterable, Iterator, Sequence

import psycopg  # the `postgresql` extra; open_store turns its absence into a ConfigError naming the fix
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from papersift.errors import BadInput, NotFound, StoreError
from papersift.models import Paper
from papersift.store.base import Stats, UpsertResult
from papersift.store.merge import merge_papers, normalize_identifiers, same_content
from papersift.store.migrations import load_migrations
from papersift.store.postgres_accounts import AccountTables
from papersift.store.postgres_digests import DigestTables
from papersift.store.postgres_index import IndexTables
from papersift.store.postgres_readers import ReaderTables
from papersift.store.postgres_rows import P_COLUMNS, PAPER_COLUMNS, WRITE_COLUMNS, now, paper_values, row_to_paper

# pg_advisory_xact_lock keys: one for paper writes, one for migrations (any two distinct bigints)
WRITE_LOCK = 0x7061706572  # "paper"
MIGRATE_LOCK = 0x6D69677261  # "migra"
# seconds a pooled connection may sit unused and still be handed out without a ping; a server restart
# within this window fails the one request that meets the dead connection (the pool then drops it)
CHECK_IDLE = 30.0


def _sqlite_helpers():
    # the pure matching helpers are shared with the reference backend, not copied
    from papersift.store.sqlite import SQLiteStore, _title_key, _with_id

    return SQLiteStore._index_match, SQLiteStore._pick_match, _title_key, _with_id


_index_match, _pick_match, _title_key, _with_id = _sqlite_helpers()


def masked(url: str) -> str:
    """The URL with any password hidden: safe for messages and logs."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


_TEXT_FIELDS = ("title", "abstract", "comment", "journal_ref", "raw", "source")


def _strip_nul(v):
    if isinstance(v, str):
        return v.replace("\x00", "")
    if isinstance(v, dict):
        return {_strip_nul(k): _strip_nul(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_strip_nul(x) for x in v)
    return v


def _without_nul(p: Paper) -> Paper:
    """PostgreSQL text holds no NUL character (SQLite's does): drop them, as the catalog would show none.
    Done before matching, so a re-ingest of the same record still reads as unchanged."""
    texts = [getattr(p, f) or "" for f in _TEXT_FIELDS] + list(p.authors) + list(p.categories)
    if not any("\x00" in t for t in texts) and "\\x00" not in repr((p.links, p.signals)):
        return p
    return dataclasses.replace(p, **{f: _strip_nul(getattr(p, f)) for f in _TEXT_FIELDS},
                               authors=_strip_nul(tuple(p.authors)), categories=_strip_nul(tuple(p.categories)),
                               links=_strip_nul(dict(p.links)), signals=_strip_nul(dict(p.signals)))


class PostgresStore(ReaderTables, AccountTables, DigestTables, IndexTables):
    """A catalog in a PostgreSQL database. Safe to share across threads (a pool of connections)."""

    def __init__(self, url: str, pool_size: int = 10, connect_timeout: float = 15.0):
        self.url = url
        self.path = masked(url)  # what messages name; never the password
        self._last_used: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection → last checkout
        self._timeout = connect_timeout
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="papersift",
                                    kwargs={"connect_timeout": int(max(connect_timeout, 1))},
                                    check=self._check)
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {self.path}",
                             hint="check that the server runs and that the URL's host, port, user and "
                                  "database are right") from None
        # author name → row id; author rows are never deleted, so a cached id stays valid. Filled only
        # after a commit: an id from a rolled-back insert would point at nothing (or another name).
        self._author_ids: dict[str, int] = {}

    # -- connections ---------------------------------------------------------------------------
    def _check(self, conn) -> None:
        """The pool's check on checkout: a connection used in the last CHECK_IDLE seconds is taken as
        alive; an older one is pinged first (a round trip). Pinging every checkout doubled the round
        trips of every store call (bench/pg_vs_sqlite.py: 12 transactions per paper page for 6 calls)."""
        last = self._last_used.get(conn)
        if last is None or time.monotonic() - last > CHECK_IDLE:
            ConnectionPool.check_connection(conn)

    @contextlib.contextmanager
    def _connection(self):
        """A pooled connection for one transaction: committed on return, rolled back on an exception."""
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                self._last_used[conn] = time.monotonic()
                yield conn
        except PoolTimeout:
            raise StoreError(f"no free connection to {self.path} within {self._timeout:g} s",
                             hint="raise the pool size or lower the load") from None
        except psycopg.OperationalError as e:
            raise StoreError(f"PostgreSQL at {self.path}: {e}") from None

    def _query(self, sql: str, args: Sequence | dict = ()) -> list[tuple]:
        with self._connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence = ()):
        with self._connection() as conn:
            return conn.execute(sql, args).fetchone()

    def _rowcount(self, sql: str, args: Sequence = ()) -> int:
        with self._connection() as conn:
            return conn.execute(sql, args).rowcount

    def close(self) -> None:
        self._pool.close()

    # -- migrations ----------------------------------------------------------------------------
    @staticmethod
    def _version(conn) -> int:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    def schema_version(self) -> int:
        with self._connection() as conn:
            return self._version(conn)

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, each in its own transaction, one migrating process at
        a time (a session advisory lock). Returns their names."""
        applied: list[str] = []
        with self._connection() as conn:
            conn.autocommit = True
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)")
                current = self._version(conn)
                for version, name, sql in load_migrations("postgresql"):
                    if version <= current:
                        continue
                    try:
                        with conn.transaction():
                            conn.execute(sql)
                            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, now()))
                    except psycopg.Error as e:
                        raise StoreError(f"migration {version} ({name}) failed: {e}") from None
                    applied.append(name)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
                conn.autocommit = False
        return applied

    def compact(self) -> tuple[int, int]:
        """VACUUM (ANALYZE) the database: dead rows' space is reused and the planner's statistics are
        fresh. (Files shrink only with VACUUM FULL, which locks each table: left to the operator.)"""
        self._require_schema()
        size = "SELECT pg_database_size(current_database())"
        with self._connection() as conn:
            conn.autocommit = True  # VACUUM runs outside any transaction
            try:
                before = conn.execute(size).fetchone()[0]
                conn.execute("VACUUM (ANALYZE)")
                return before, conn.execute(size).fetchone()[0]
            except psycopg.Error as e:
                raise StoreError(f"cannot compact {self.path}: {e}") from None
            finally:
                conn.autocommit = False

    def _require_schema(self) -> None:
        if self.schema_version() == 0:
            raise StoreError(f"no catalog at {self.path}", hint="run `papersift migrate` (or any ingest) first")

    # -- papers --------------------------------------------------------------------------------
    def upsert_papers(self, papers: Sequence[Paper], checkpoint: tuple[str, str] | None = None) -> UpsertResult:
        """Insert or merge a batch of papers in one transaction (with the checkpoint, if given)."""
        result = UpsertResult()
        for p in papers:
            if not p.title:
                raise BadInput(f"a paper needs a title: {p.arxiv_id or p.doi or p!r}")
        papers = [_without_nul(normalize_identifiers(p)) for p in papers]
        keys = [_title_key(p) for p in papers]
        new_author_ids: dict[str, int] = {}
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            existing = self._match_existing(conn, papers, keys)
            touched: dict[int, Paper] = {}
            before: dict[int, Paper] = {}
            inserted: dict[int, Paper] = {}
            # the write lock is held: these are above every committed id and change_seq
            next_id, seq = conn.execute(
                "SELECT coalesce(max(id), 0) + 1, coalesce(max(change_seq), 0) + 1 FROM papers").fetchone()
            for paper, tkey in zip(papers, keys):
                row = _pick_match(paper, tkey, existing, touched)
                if row is None:
                    paper = _with_id(paper, next_id)
                    next_id += 1
                    inserted[paper.id] = paper
                    _index_match(existing, paper, tkey)
                    result.added += 1
                    continue
                merged = merge_papers(row, paper)
                if row.id not in inserted and (merged.doi != row.doi or merged.arxiv_id != row.arxiv_id):
                    merged = self._drop_conflicting_ids(conn, merged, row)
                if same_content(row, merged):
                    if row.id not in touched and row.id not in inserted:
                        result.unchanged += 1
                    continue
                if row.id in inserted:
                    inserted[row.id] = merged
                else:
                    touched[row.id] = merged
                    before.setdefault(row.id, row)
                _index_match(existing, merged)
            stamp = now()
            self._insert_papers(conn, list(inserted.values()), seq, stamp)
            if touched:
                sets = ", ".join(f"{c} = %s" for c in WRITE_COLUMNS)
                conn.cursor().executemany(
                    f"UPDATE papers SET {sets}, changed_at = %s, change_seq = %s WHERE id = %s",
                    [(*paper_values(p, _title_key(p)), stamp, seq, pid) for pid, p in touched.items()])
                result.updated += len(touched)
            new_author_ids = self._write_authors_categories(conn, {**inserted, **touched}, before)
            if checkpoint is not None:
                conn.execute(
                    "INSERT INTO ingest_checkpoints VALUES (%s, %s, %s) ON CONFLICT (source_key) "
                    "DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                    (checkpoint[0], checkpoint[1], stamp))
        if len(self._author_ids) > 500_000:  # bounded: a cache, not a copy of the table
            self._author_ids.clear()
        self._author_ids.update(new_author_ids)
        return result

    def _match_existing(self, conn, papers: Sequence[Paper], keys: list[str]) -> dict[str, Paper]:
        """Stored papers that any paper of the batch may be: by arXiv id, DOI or title key."""
        arxiv_ids = list({p.arxiv_id for p in papers if p.arxiv_id})
        dois = list({p.doi for p in papers if p.doi})
        keys_with_id = list({k for p, k in zip(papers, keys) if p.arxiv_id})
        keys_without_id = list({k for p, k in zip(papers, keys) if not p.arxiv_id})
        found: dict[str, Paper] = {}
        for where, values in (("arxiv_id = ANY(%s::text[])", arxiv_ids), ("doi = ANY(%s::text[])", dois),
                              ("title_key = ANY(%s::text[]) AND arxiv_id IS NULL", keys_with_id),
                              ("title_key = ANY(%s::text[])", keys_without_id)):
            if values:
                for row in conn.execute(f"SELECT {PAPER_COLUMNS} FROM papers WHERE {where}", (values,)):
                    _index_match(found, row_to_paper(row))
        return found

    @staticmethod
    def _drop_conflicting_ids(conn, merged: Paper, row: Paper) -> Paper:
        """Never steal an identifier that another stored paper holds: keep the row's own instead."""
        if merged.doi and merged.doi != row.doi:
            if conn.execute("SELECT 1 FROM papers WHERE doi = %s AND id <> %s", (merged.doi, row.id)).fetchone():
                merged = dataclasses.replace(merged, doi=row.doi)
        if merged.arxiv_id and merged.arxiv_id != row.arxiv_id:
            if conn.execute("SELECT 1 FROM papers WHERE arxiv_id = %s AND id <> %s",
                            (merged.arxiv_id, row.id)).fetchone():
                merged = dataclasses.replace(merged, arxiv_id=row.arxiv_id)
        return merged

    @staticmethod
    def _insert_papers(conn, papers: list[Paper], seq: int, stamp) -> None:
        if not papers:
            return
        marks = ", ".join(["%s"] * (len(WRITE_COLUMNS) + 4))
        sql = (f"INSERT INTO papers (id, {', '.join(WRITE_COLUMNS)}, added_at, changed_at, change_seq) "
               f"VALUES ({marks})")
        rows = [(p.id, *paper_values(p, _title_key(p)), stamp, stamp, seq) for p in papers]
        try:
            with conn.transaction():  # a savepoint
                # COPY: several times faster than INSERTs on the bulk path
                with conn.cursor().copy(f"COPY papers (id, {', '.join(WRITE_COLUMNS)}, added_at, changed_at, "
                                        "change_seq) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            # A DOI that another paper (stored, or earlier in this batch) with another arXiv id holds:
            # keep both papers, the DOI on the first. Rare, so only then is the batch redone row by row.
            for row in rows:
                try:
                    with conn.transaction():
                        conn.execute(sql, row)
                except psycopg.errors.UniqueViolation:
                    conn.execute(sql, (*row[:3], None, *row[4:]))

    def _write_authors_categories(self, conn, papers: dict[int, Paper], before: dict[int, Paper]) -> dict[str, int]:
        """The author and category rows of a batch's papers, in bulk; `before` holds the stored state of
        updated papers, whose old rows go first. Returns the author ids it looked up."""
        cached = self._author_ids
        names = list({name for p in papers.values() for name in p.authors if name not in cached})
        found: dict[str, int] = {}
        if names:
            conn.execute("INSERT INTO authors (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (names,))
            found = dict(conn.execute("SELECT name, id FROM authors WHERE name = ANY(%s::text[])", (names,)).fetchall())
        ids = {**cached, **found}
        if before:
            old = list(before)
            conn.execute("DELETE FROM paper_authors WHERE paper_id = ANY(%s::bigint[])", (old,))
            conn.execute("DELETE FROM paper_categories WHERE paper_id = ANY(%s::bigint[])", (old,))
        rows = [(ids[name], pid, i) for pid, p in papers.items() for i, name in enumerate(p.authors)]
        if rows:
            conn.execute("INSERT INTO paper_authors SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) "
                         "ON CONFLICT DO NOTHING", [list(col) for col in zip(*rows)])
        rows = [(c, pid, i) for pid, p in papers.items() for i, c in enumerate(dict.fromkeys(p.categories))]
        if rows:
            conn.execute("INSERT INTO paper_categories SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[]) "
                         "ON CONFLICT DO NOTHING", [list(col) for col in zip(*rows)])
        return found

    def _resolve_ref(self, ref: str | int) -> tuple[str, object]:
        from papersift.store.sqlite import SQLiteStore

        return SQLiteStore._resolve_ref(self, ref)  # pure: parses the reference, touches no database

    def find_paper(self, ref: str | int) -> Paper | None:
        column, value = self._resolve_ref(ref)
        row = self._one(f"SELECT {PAPER_COLUMNS} FROM papers WHERE {column} = %s", (value,))
        return row_to_paper(row) if row else None

    def get_paper(self, ref: str | int) -> Paper:
        paper = self.find_paper(ref)
        if paper is None:
            raise NotFound(f"no paper {ref!r} in the catalog")
        return paper

    def get_papers(self, ids: Sequence[int]) -> list[Paper]:
        """Papers by row id, in the order asked (ids not found are left out)."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        rows = self._query(f"SELECT {PAPER_COLUMNS} FROM papers WHERE id = ANY(%s::bigint[])", (ids,))
        out = {r[0]: row_to_paper(r) for r in rows}
        return [out[i] for i in ids if i in out]

    def iter_papers(self, after_id: int = 0, batch: int = 1000) -> Iterator[Paper]:
        last = after_id
        while True:
            rows = self._query(f"SELECT {PAPER_COLUMNS} FROM papers WHERE id > %s ORDER BY id LIMIT %s", (last, batch))
            if not rows:
                return
            for row in rows:
                yield row_to_paper(row)
            last = rows[-1][0]

    def texts_since(self, seq: int, batch: int = 5000) -> Iterator[tuple[int, int, str, str, str]]:
        """(id, change_seq, title, abstract, authors as one string) of every paper changed after `seq`,
        in change order."""
        last = (seq, 2**63 - 1)
        while True:
            rows = self._query(
                "SELECT id, change_seq, title, abstract, authors FROM papers WHERE (change_seq, id) > (%s, %s) "
                "ORDER BY change_seq, id LIMIT %s", (*last, batch))
            if not rows:
                return
            for pid, cseq, title, abstract, authors in rows:
                yield pid, cseq, title or "", abstract or "", " ".join(authors)
            last = (rows[-1][1], rows[-1][0])

    def count_papers(self) -> int:
        return self._one("SELECT count(*) FROM papers")[0]

    def papers_listed(self, start, end, category: str | None = None, limit: int = 100, offset: int = 0) -> list[Paper]:
        """Papers first listed in [start, end], newest listing first."""
        if category:
            sql = (f"SELECT {P_COLUMNS} FROM papers p JOIN paper_categories c ON c.paper_id = p.id "
                   "WHERE c.category = %s AND p.listed BETWEEN %s AND %s "
                   "ORDER BY p.listed DESC, p.id DESC LIMIT %s OFFSET %s")
            args: tuple = (category, start, end, limit, offset)
        else:
            sql = (f"SELECT {PAPER_COLUMNS} FROM papers WHERE listed BETWEEN %s AND %s "
                   "ORDER BY listed DESC, id DESC LIMIT %s OFFSET %s")
            args = (start, end, limit, offset)
        return [row_to_paper(r) for r in self._query(sql, args)]

    def listed_days(self, day=None, category: str | None = None) -> tuple:
        """(the last listing day before `day`, the first after it, the last of all), in `category` when given."""
        if category:
            base = "SELECT {} FROM papers p JOIN paper_categories c ON c.paper_id = p.id WHERE c.category = %s AND "
            args: tuple = (category,)
        else:
            base, args = "SELECT {} FROM papers p WHERE ", ()
        with self._connection() as conn:
            def one(agg: str, cond: str, extra: tuple):
                return conn.execute(base.format(agg) + cond, args + extra).fetchone()[0]

            last = one("max(p.listed)", "p.listed IS NOT NULL", ())
            if day is None:
                return None, None, last
            return one("max(p.listed)", "p.listed < %s", (day,)), one("min(p.listed)", "p.listed > %s", (day,)), last

    def papers_by_author(self, name: str, limit: int = 100) -> list[Paper]:
        rows = self._query(
            f"SELECT {P_COLUMNS} FROM authors a JOIN paper_authors pa ON pa.author_id = a.id "
            "JOIN papers p ON p.id = pa.paper_id WHERE a.name = %s ORDER BY p.listed DESC NULLS LAST, p.id DESC "
            "LIMIT %s", (name, limit))
        return [row_to_paper(r) for r in rows]

    # -- ingest bookkeeping --------------------------------------------------------------------
    def get_checkpoint(self, source_key: str) -> str | None:
        row = self._one("SELECT position FROM ingest_checkpoints WHERE source_key = %s", (source_key,))
        return row[0] if row else None

    def clear_checkpoint(self, source_key: str) -> None:
        self._rowcount("DELETE FROM ingest_checkpoints WHERE source_key = %s", (source_key,))

    def start_ingest_run(self, source: str, target: str) -> int:
        return self._one("INSERT INTO ingest_runs (source, target, started_at, status) VALUES (%s, %s, %s, 'running') "
                         "RETURNING id", (source, target, now()))[0]

    def finish_ingest_run(self, run_id: int, status: str, counts: dict, problems: Iterable[str]) -> None:
        self._rowcount(
            "UPDATE ingest_runs SET finished_at=%s, status=%s, seen=%s, added=%s, updated=%s, unchanged=%s, "
            "skipped=%s, problems=%s WHERE id=%s",
            (now(), status, counts.get("seen", 0), counts.get("added", 0), counts.get("updated", 0),
             counts.get("unchanged", 0), counts.get("skipped", 0), Jsonb(list(problems)[:100]), run_id))

    # -- stats ---------------------------------------------------------------------------------
    def stats(self) -> Stats:
        self._require_schema()
        with self._connection() as conn:
            def count(table: str) -> int:
                return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

            first, last = conn.execute("SELECT min(listed), max(listed) FROM papers").fetchone()
            by_cat = conn.execute(
                "SELECT primary_category, count(*) FROM papers WHERE primary_category IS NOT NULL "
                "GROUP BY primary_category ORDER BY count(*) DESC, primary_category LIMIT 10").fetchall()
            by_source = conn.execute(
                "SELECT source, count(*) FROM papers GROUP BY source ORDER BY count(*) DESC, source").fetchall()
            runs = conn.execute(
                "SELECT source, target, started_at, status, seen, added, updated, unchanged, skipped "
                "FROM ingest_runs ORDER BY id DESC LIMIT 5").fetchall()
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            return Stats(
                papers=count("papers"), authors=count("authors"), users=count("users"),
                interactions=count("interactions"), collections=count("collections"),
                subscriptions=count("subscriptions"),
                first_listed=first.isoformat() if first else None, last_listed=last.isoformat() if last else None,
                by_category=[tuple(r) for r in by_cat], by_source=[tuple(r) for r in by_source], size_bytes=size,
                schema_version=self._version(conn),
                last_runs=[dict(zip(("source", "target", "started_at", "status", "seen", "added", "updated",
                                     "unchanged", "skipped"), (r[0], r[1], r[2].isoformat(timespec="seconds"), *r[3:])))
                           for r in runs],
            )
