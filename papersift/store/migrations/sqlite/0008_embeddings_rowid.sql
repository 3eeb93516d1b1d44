-- Embeddings move to an ordinary rowid table with a unique (model, paper_id) index. In the WITHOUT
-- ROWID table of 0003 a row may keep only ~1 kB on its b-tree page, so every 1.5 kB MiniLM vector
-- spilled onto an overflow page of its own: 41 % of a 74.7k-paper catalog file was empty space. A rowid
-- table keeps rows up to ~4 kB on the page (two vectors a page). Same columns, same upsert target.
CREATE TABLE embeddings_rowid (
    model    TEXT NOT NULL,
    paper_id INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,   -- the paper's change_seq when it was embedded
    vector   BLOB NOT NULL
);
INSERT INTO embeddings_rowid (model, paper_id, seq, vector)
    SELECT model, paper_id, seq, vector FROM embeddings ORDER BY model, paper_id;
DROP TABLE embeddings;
ALTER TABLE embeddings_rowid RENAME TO embeddings;
CREATE UNIQUE INDEX embeddings_model_paper ON embeddings (model, paper_id);
