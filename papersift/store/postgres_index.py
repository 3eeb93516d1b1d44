"""The PostgreSQL catalog's index support: full text (tsvector + GIN), the vocabulary for spelling
corrections, and embeddings in pgvector. A mixin of PostgresStore, answering as the SQLite store's
fulltext.py / spelling.py / embedding methods do.

Full text: one weighted tsvector per paper (title A, abstract B, authors C) in papers_fts, ranked by
ts_rank with weights {D, C, B, A} = {0, 0.2, 0.4, 1.0}. A user's query never reaches tsquery syntax raw:
it is split as fulltext.build_match splits it (words, "phrases", prefix*), each part becomes
plainto_tsquery / phraseto_tsquery / a quoted `'word':*` prefix, and the parts are OR-ed, so `"`,
`NEAR(`, `*`, `AND`, `'; DROP TABLE` are searched for, never parsed. (websearch_to_tsquery would be
safe as well, but it ANDs words and reads `or` and `-word` as operators; the SQLite reference ORs words
and lets the ranking put papers matching more of them first.) Stopwords are not indexed: a query made
only of stopwords finds nothing here, where SQLite searches for the stopwords themselves.

Embeddings: a `vector` column (pgvector) per (model, paper), no bytea copy. Vectors are read back with
vector_send (pgvector's binary form: int16 dim, int16 unused, dim big-endian float32), so no type
registration is needed; written in that same form by a binary COPY (built by numpy in one pass, no text).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Iterator, Sequence

import numpy as np

from papersift.errors import BadInput
from papersift.store import postgres_spelling, spelling
from papersift.store.fulltext import _TOKEN, _WORD, STOPWORDS, Filters

CONFIG = "papersift"  # the text search configuration of migration 0002: English, accents folded
WEIGHTS = "{0, 0.2, 0.4, 1.0}"  # D (unused), C authors, B abstract, A title
FTS_LOCK = 0x66747373796E  # "ftssyn": one full-text sync at a time
DOC = ("setweight(to_tsvector('papersift', p.title), 'A') || setweight(to_tsvector('papersift', p.abstract), 'B') "
       "|| setweight(to_tsvector('papersift', array_to_string(p.authors, ' ')), 'C')")
_MAX_WORD = 200  # longer "words" are no words (and tsquery refuses lexemes over 2 kB)


def build_tsquery(query: str, max_terms: int = 64) -> tuple[str, list[str]] | None:
    """(SQL expression of a tsquery, its parameters) for a user query, or None when nothing searchable is
    left. Every piece of the user's text travels as a parameter."""
    parts: list[tuple[str, str]] = []
    seen: set[str] = set()
    for m in _TOKEN.finditer(query):
        phrase, word = m.group(1), m.group(2)
        if phrase is not None:
            words = [w for w in _WORD.findall(phrase) if len(w) <= _MAX_WORD]
            if words:
                parts.append((f"phraseto_tsquery('{CONFIG}', %s)", " ".join(words)))
            continue
        prefix = word.endswith("*")
        for w in _WORD.findall(word.rstrip("*")):
            lw = w.lower()
            if (lw in STOPWORDS and not prefix) or lw in seen or len(w) > _MAX_WORD:
                continue
            seen.add(lw)
            if prefix and len(w) >= 2:
                # \w+ holds no quote or backslash: quoted, it is one lexeme to to_tsquery
                parts.append((f"to_tsquery('{CONFIG}', %s)", f"'{lw}':*"))
            else:
                parts.append((f"plainto_tsquery('{CONFIG}', %s)", w))
        if len(parts) >= max_terms:
            break
    if not parts:
        return None
    parts = parts[:max_terms]
    return "(" + " || ".join(sql for sql, _ in parts) + ")", [arg for _, arg in parts]


def filter_sql(filters: Filters | None) -> tuple[str, list]:
    if filters is None:
        return "", []
    where, args = [], []
    if filters.category:
        where.append("p.id IN (SELECT paper_id FROM paper_categories WHERE category = %s)")
        args.append(filters.category)
    if filters.since:
        where.append("coalesce(p.listed, p.submitted) >= %s")
        args.append(filters.since)
    if filters.until:
        where.append("coalesce(p.listed, p.submitted) <= %s")
        args.append(filters.until)
    if filters.author:
        where.append("p.id IN (SELECT pa.paper_id FROM authors a JOIN paper_authors pa ON pa.author_id = a.id "
                     "WHERE lower(a.name) = lower(%s))")
        args.append(filters.author)
    return ("AND " + " AND ".join(where)) if where else "", args


_MAX_DIM = 16_000  # pgvector's limit for `vector`
_COPY_ROWS = 4096  # rows per block written to a COPY: a few MB, however large the batch


def _copy_binary(ids: np.ndarray, seqs: np.ndarray, vectors: np.ndarray) -> Iterator[bytes]:
    """(paper_id bigint, seq bigint, vector) rows in PostgreSQL's binary COPY format, header to trailer.
    Every row has the same length, so numpy lays them out as one big-endian record array."""
    n, dim = vectors.shape
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("seq_len", ">i4"), ("seq", ">i8"),
                    ("vec_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dim,))])
    yield b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
    for start in range(0, n, _COPY_ROWS):
        end = min(n, start + _COPY_ROWS)
        block = np.zeros(end - start, dtype=row)
        block["fields"], block["id_len"], block["seq_len"], block["vec_len"] = 3, 8, 8, 4 + 4 * dim
        block["id"], block["seq"], block["dim"] = ids[start:end], seqs[start:end], dim
        block["vec"] = vectors[start:end]  # vector_recv: int16 dim, int16 unused, float4 big-endian
        yield block.tobytes()
    yield b"\xff\xff"  # trailer: a field count of -1


def _vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """float32 [n, dim] from pgvector's binary values."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    out = np.empty((len(blobs), dim), dtype=np.float32)
    for i, blob in enumerate(blobs):
        out[i] = np.frombuffer(blob, dtype=">f4", count=dim, offset=4)
    return out


class IndexTables:
    def catalog_id(self) -> str:
        """This catalog's identity (see base.Store), kept in index_state (written once: reads stay reads)."""
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM index_state WHERE key = 'catalog_id'").fetchone()
            if row is None:
                conn.execute("INSERT INTO index_state VALUES ('catalog_id', %s) ON CONFLICT (key) DO NOTHING",
                             (uuid.uuid4().hex,))
                row = conn.execute("SELECT value FROM index_state WHERE key = 'catalog_id'").fetchone()
            return row[0]

    # -- full text -----------------------------------------------------------------------------
    def sync_fulltext(self) -> int:
        """Bring papers_fts (and its vocabulary) in step with papers: every paper whose change_seq is above
        the last synced one, one transaction per write batch of the catalog, watermark included."""
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM index_state WHERE key = 'fts_seq'").fetchone()
            mark = int(row[0]) if row else 0
            seqs = [r[0] for r in conn.execute(
                "SELECT DISTINCT change_seq FROM papers WHERE change_seq > %s ORDER BY change_seq", (mark,))]
        written = 0
        for seq in seqs:
            with self._connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (FTS_LOCK,))
                row = conn.execute("SELECT value FROM index_state WHERE key = 'fts_seq'").fetchone()
                if row and int(row[0]) >= seq:
                    continue  # another sync did it meanwhile
                ids = [r[0] for r in conn.execute("SELECT id FROM papers WHERE change_seq = %s", (seq,))]
                # the vocabulary counts papers per lexeme: take the old documents' lexemes out, the new ones in
                emptied = [r[0] for r in conn.execute(
                    "UPDATE papers_fts_vocab v SET doc = v.doc - d.n FROM (SELECT lexeme, count(*) AS n "
                    "FROM papers_fts f, unnest(tsvector_to_array(f.doc)) AS lexeme "
                    "WHERE f.paper_id = ANY(%s::bigint[]) GROUP BY lexeme) d WHERE v.term = d.lexeme "
                    "RETURNING v.term, v.doc", (ids,)) if r[1] <= 0]
                conn.execute(
                    f"INSERT INTO papers_fts (paper_id, doc) SELECT p.id, {DOC} FROM papers p WHERE p.change_seq = %s "
                    "ON CONFLICT (paper_id) DO UPDATE SET doc = excluded.doc", (seq,))
                conn.execute(
                    "INSERT INTO papers_fts_vocab (term, doc) SELECT lexeme, count(*) "
                    "FROM papers_fts f, unnest(tsvector_to_array(f.doc)) AS lexeme "
                    "WHERE f.paper_id = ANY(%s::bigint[]) GROUP BY lexeme "
                    "ON CONFLICT (term) DO UPDATE SET doc = papers_fts_vocab.doc + excluded.doc", (ids,))
                if emptied:  # lexemes no paper holds any more (unless the new documents brought them back)
                    conn.execute("DELETE FROM papers_fts_vocab WHERE term = ANY(%s::text[]) AND doc <= 0", (emptied,))
                conn.execute("INSERT INTO index_state VALUES ('fts_seq', %s) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value", (str(seq),))
                written += len(ids)
        return written

    def search_fulltext(self, query: str, limit: int = 100, filters: Filters | None = None) -> list[tuple[int, float]]:
        """(paper id, ts_rank score) best first; higher is better."""
        built = build_tsquery(query)
        if built is None:
            return []
        tsquery, args = built
        where, fargs = filter_sql(filters)
        sql = (f"SELECT f.paper_id, ts_rank('{WEIGHTS}', f.doc, q.q, 1) AS score "
               f"FROM (SELECT {tsquery} AS q) q, papers_fts f JOIN papers p ON p.id = f.paper_id "
               f"WHERE f.doc @@ q.q {where} ORDER BY score DESC, f.paper_id LIMIT %s")
        return [(r[0], float(r[1])) for r in self._query(sql, [*args, *fargs, limit])]

    def filtered_ids(self, filters: Filters) -> list[int]:
        """Every paper id passing the filters (for filtering vector search)."""
        where, args = filter_sql(filters)
        return [r[0] for r in self._query(f"SELECT p.id FROM papers p WHERE true {where}", args)]

    def warm_spelling(self, wait: bool = False) -> None:
        """Read the English word list in the background (~0.2 s), not on the first typed query. The
        catalog's vocabulary needs no warming here: a table kept by sync_fulltext, read by range scans."""
        thread = threading.Thread(target=spelling.english_words, name="papersift-dictionary", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def spelling_corrections(self, query: str) -> dict[str, str]:
        """{typed word: indexed word} for the query's words that (almost) no paper contains."""
        with self._connection() as conn:
            return spelling.corrections(conn, query, postgres_spelling.POSTGRES)

    # -- embeddings ----------------------------------------------------------------------------
    def papers_to_embed(self, model: str, limit: int = 1000,
                        after: tuple[int, int] = (0, 0)) -> list[tuple[int, int, str, str]]:
        """(id, change_seq, title, abstract) of papers with no embedding for `model`, or an outdated one,
        oldest change first, after the (change_seq, id) `after`."""
        return [tuple(r) for r in self._query(
            "SELECT p.id, p.change_seq, p.title, p.abstract FROM papers p LEFT JOIN embeddings e "
            "ON e.model = %s AND e.paper_id = p.id WHERE (p.change_seq, p.id) > (%s, %s) "
            "AND (e.paper_id IS NULL OR e.seq < p.change_seq) ORDER BY p.change_seq, p.id LIMIT %s",
            (model, *after, limit))]

    def save_embeddings(self, model: str, rows: Sequence[tuple[int, int]], vectors) -> None:
        """Store vectors for (paper id, change_seq) rows, in one transaction (a paper given twice: the
        last one wins, as row-by-row upserts would leave it).

        A binary COPY into a temporary table, then one upsert from it: about 30 times the speed of
        row-by-row INSERTs of float4[] text (bench/pg_vs_sqlite.py measures both)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(rows) != len(vectors):
            raise BadInput(f"{len(rows)} papers but {len(vectors)} vectors")
        if not len(rows):
            return
        if vectors.ndim != 2 or not 0 < vectors.shape[1] <= _MAX_DIM:
            raise BadInput(f"vectors must be a [papers, 1..{_MAX_DIM}] array, not of shape {vectors.shape}")
        ids = np.array([int(pid) for pid, _ in rows], dtype=np.int64)
        seqs = np.array([int(seq) for _, seq in rows], dtype=np.int64)
        # the last occurrence of each paper, in paper-id order (a fixed lock order between writers)
        _, last = np.unique(ids[::-1], return_index=True)
        keep = len(ids) - 1 - last
        with self._connection() as conn:
            conn.execute("CREATE TEMP TABLE embeddings_in (paper_id bigint NOT NULL, seq bigint NOT NULL, "
                         "vector vector NOT NULL) ON COMMIT DROP")
            with conn.cursor().copy("COPY embeddings_in FROM STDIN (FORMAT BINARY)") as copy:
                for data in _copy_binary(ids[keep], seqs[keep], vectors[keep]):
                    copy.write(data)
            conn.execute("INSERT INTO embeddings (model, paper_id, seq, vector) SELECT %s, paper_id, seq, vector "
                         "FROM embeddings_in ORDER BY paper_id ON CONFLICT (model, paper_id) "
                         "DO UPDATE SET seq = excluded.seq, vector = excluded.vector", (model,))

    def load_embeddings(self, model: str, dim: int, with_seq: bool = False):
        """(paper ids int64 [n], vectors float32 [n, dim]) of every paper embedded with `model`, by id;
        with `with_seq`, also the change_seq each vector was computed at."""
        rows = self._query("SELECT paper_id, vector_send(vector), seq FROM embeddings WHERE model = %s "
                           "ORDER BY paper_id", (model,))
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = _vectors([r[1] for r in rows], dim)
        if with_seq:
            return ids, vectors, np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
        return ids, vectors

    def embedding_seqs(self, model: str):
        """(paper ids int64 [n], change_seq int64 [n]) of every paper embedded with `model`, by id."""
        rows = self._query("SELECT paper_id, seq FROM embeddings WHERE model = %s ORDER BY paper_id", (model,))
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)))

    def paper_embeddings(self, model: str, paper_ids: Sequence[int], dim: int):
        """(paper ids int64 [n], vectors float32 [n, dim]) of those of `paper_ids` embedded with `model`."""
        ids = sorted({int(i) for i in paper_ids})
        rows = self._query("SELECT paper_id, vector_send(vector) FROM embeddings WHERE model = %s "
                           "AND paper_id = ANY(%s::bigint[]) ORDER BY paper_id", (model, ids)) if ids else []
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), _vectors([r[1] for r in rows], dim)

    def paper_embedding(self, model: str, paper_id: int, dim: int) -> np.ndarray | None:
        row = self._one("SELECT vector_send(vector) FROM embeddings WHERE model = %s AND paper_id = %s",
                        (model, paper_id))
        return _vectors([row[0]], dim)[0] if row else None

    def embedding_models(self) -> dict[str, int]:
        return dict(self._query("SELECT model, count(*) FROM embeddings GROUP BY model"))

    def delete_embeddings(self, model: str) -> int:
        return self._rowcount("DELETE FROM embeddings WHERE model = %s", (model,))

    # -- PostgreSQL only: k-NN in the database -------------------------------------------------
    def create_vector_index(self, model: str, dim: int) -> None:
        """An HNSW index (cosine) on `model`'s vectors, for nearest_papers. Not part of the Store protocol:
        papersift's own VectorIndex (index/) serves the site; this serves SQL users and other services."""
        from psycopg import sql

        name = "embeddings_hnsw_" + hashlib.blake2b(model.encode(), digest_size=8).hexdigest()
        with self._connection() as conn:
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON embeddings USING hnsw "
                                 "((vector::vector({})) vector_cosine_ops) WHERE model = {}").format(
                sql.Identifier(name), sql.Literal(int(dim)), sql.Literal(model)))

    def nearest_papers(self, model: str, vector, k: int = 10) -> list[tuple[int, float]]:
        """(paper id, cosine similarity) of the `k` papers nearest to `vector`, best first (uses the HNSW
        index of create_vector_index when there is one)."""
        vec = np.asarray(vector, dtype=np.float32).ravel()
        dim = int(vec.shape[0])
        # one named parameter used twice: psycopg sends the vector once ($1 both times)
        rows = self._query(
            f"SELECT paper_id, 1 - (vector::vector({dim}) <=> %(q)s::real[]::vector({dim})) FROM embeddings "
            f"WHERE model = %(model)s ORDER BY vector::vector({dim}) <=> %(q)s::real[]::vector({dim}) LIMIT %(k)s",
            {"q": vec.tolist(), "model": model, "k": int(k)})
        return [(r[0], float(r[1])) for r in rows]
