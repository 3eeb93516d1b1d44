-- Paper embeddings, one row per (model, paper), in pgvector's `vector` type. `model` names the model
-- AND its version, so vectors of two models never mix. The column has no fixed dimension (models
-- differ); an HNSW index needs one, so PostgresStore.create_vector_index(model, dim) builds a partial
-- expression index per model: (vector::vector(dim)) vector_cosine_ops WHERE model = '…'.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE embeddings (
    model    text NOT NULL,
    paper_id bigint NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    seq      bigint NOT NULL,   -- the paper's change_seq when it was embedded
    vector   vector NOT NULL,
    PRIMARY KEY (model, paper_id)
);
CREATE INDEX embeddings_paper ON embeddings (paper_id);
