-- Paper embeddings, one row per (model, paper). `model` names the model AND its version (runtime,
-- quantization, max tokens), so vectors of two models never mix; switching models re-embeds into new
-- rows while the old ones keep serving. Vectors are little-endian float32 bytes.
CREATE TABLE embeddings (
    model    TEXT NOT NULL,
    paper_id INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,   -- the paper's change_seq when it was embedded
    vector   BLOB NOT NULL,
    PRIMARY KEY (model, paper_id)
) WITHOUT ROWID;
