-- Full text (FTS5, BM25): its own copy of the searchable text, kept in step by the index step
-- (`papersift index`), not by triggers, so that bulk ingest stays fast. Row id = papers.id.
-- Porter stemming on unicode61 tokens with diacritics folded: "optimise" finds "optimisation".
CREATE VIRTUAL TABLE papers_fts USING fts5(
    title, abstract, authors,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Small key/value bookkeeping for the index step (e.g. the last synced papers.changed_at).
CREATE TABLE index_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
