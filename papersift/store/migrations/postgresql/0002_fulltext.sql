-- Full text: a tsvector per paper, title weighted A, abstract B, authors C, kept in step by the index
-- step (`papersift index` → sync_fulltext) and not by triggers, so bulk ingest stays fast; exactly
-- like SQLite's papers_fts. The text search configuration is English (Snowball stemmer, stopwords)
-- with accents folded (unaccent), as SQLite's `porter unicode61 remove_diacritics 2`.
-- CREATE EXTENSION needs a superuser (or the database owner for trusted extensions) the first time:
-- where the catalog's role may not, have an administrator run these two lines once.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH CONFIGURATION papersift (COPY = english);
ALTER TEXT SEARCH CONFIGURATION papersift
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, english_stem;

CREATE TABLE papers_fts (
    paper_id bigint PRIMARY KEY REFERENCES papers (id) ON DELETE CASCADE,
    doc      tsvector NOT NULL
);
CREATE INDEX papers_fts_doc ON papers_fts USING gin (doc);

-- The full-text vocabulary (lexeme, number of papers holding it) for the spelling corrector: what
-- SQLite's fts5vocab gives for free, kept here by sync_fulltext (counts moved per re-indexed paper).
-- Collation "C" so that prefix ranges (term >= 'tr' AND term < 'tr' || U+10FFFF) use the index.
CREATE TABLE papers_fts_vocab (
    term text COLLATE "C" PRIMARY KEY,
    doc  integer NOT NULL
);

-- Small key/value bookkeeping for the index step (e.g. the last synced change_seq).
CREATE TABLE index_state (
    key   text PRIMARY KEY,
    value text NOT NULL
);
