-- The catalog: papers, authors, users and what they do, collections, subscriptions, ingest bookkeeping.
-- Dates are ISO text (YYYY-MM-DD), timestamps ISO UTC text; JSON columns hold JSON text.

CREATE TABLE papers (
    id               INTEGER PRIMARY KEY,
    arxiv_id         TEXT,                     -- without version; unique where set
    version          INTEGER,                  -- latest version seen
    doi              TEXT,                     -- lower case, no resolver prefix; unique where set
    title_key        TEXT NOT NULL,            -- hash of folded title | first author's family name
    title            TEXT NOT NULL,
    abstract         TEXT NOT NULL DEFAULT '',
    authors          TEXT NOT NULL DEFAULT '[]',  -- JSON array in order (paper_authors has the same, indexed)
    categories       TEXT NOT NULL DEFAULT '',    -- space separated, primary first
    primary_category TEXT,
    submitted        TEXT,                     -- v1 date
    updated          TEXT,                     -- latest version's date
    listed           TEXT,                     -- first announced
    source           TEXT NOT NULL,            -- source of the newest metadata
    links            TEXT NOT NULL DEFAULT '{}',
    comment          TEXT,
    journal_ref      TEXT,
    withdrawn        INTEGER NOT NULL DEFAULT 0,
    signals          TEXT NOT NULL DEFAULT '{}',
    raw              TEXT,
    added_at         TEXT NOT NULL,
    changed_at       TEXT NOT NULL,
    change_seq       INTEGER NOT NULL           -- grows with every write batch: indexes sync on it
);
-- partial unique indexes: ACM papers have no arXiv id and most arXiv papers no DOI
CREATE UNIQUE INDEX papers_arxiv_id ON papers (arxiv_id) WHERE arxiv_id IS NOT NULL;
CREATE UNIQUE INDEX papers_doi ON papers (doi) WHERE doi IS NOT NULL;
CREATE INDEX papers_title_key ON papers (title_key);
CREATE INDEX papers_listed ON papers (listed);
CREATE INDEX papers_change_seq ON papers (change_seq);
CREATE INDEX papers_primary_listed ON papers (primary_category, listed);

CREATE TABLE authors (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Derived from papers.authors / papers.categories for author and category pages. One b-tree each,
-- keyed for lookup; the store deletes a paper's rows by its old authors/categories, so no second index.
CREATE TABLE paper_authors (
    author_id INTEGER NOT NULL REFERENCES authors (id),
    paper_id  INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    PRIMARY KEY (author_id, paper_id, position)
) WITHOUT ROWID;

CREATE TABLE paper_categories (
    category TEXT NOT NULL,
    paper_id INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (category, paper_id)
) WITHOUT ROWID;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT UNIQUE COLLATE NOCASE,
    password_hash TEXT,
    created_at    TEXT NOT NULL
);

CREATE TABLE interactions (
    id       INTEGER PRIMARY KEY,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    paper_id INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('upvote', 'save', 'view', 'dismiss')),
    at       TEXT NOT NULL
);
-- An upvote, a save or a dismissal is a state: one per reader and paper. Views are events and repeat.
CREATE UNIQUE INDEX interactions_state ON interactions (user_id, paper_id, kind) WHERE kind != 'view';
CREATE INDEX interactions_paper ON interactions (paper_id, kind);
CREATE INDEX interactions_user ON interactions (user_id, at);

CREATE TABLE collections (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE collection_items (
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    paper_id      INTEGER NOT NULL REFERENCES papers (id) ON DELETE CASCADE,
    added_at      TEXT NOT NULL,
    PRIMARY KEY (collection_id, paper_id)
) WITHOUT ROWID;

CREATE TABLE subscriptions (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    email        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    frequency    TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly')),
    categories   TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed')),
    created_at   TEXT NOT NULL,
    confirmed_at TEXT,
    last_sent_at TEXT
);

-- Where an interrupted ingest resumes: written in the same transaction as the batch it follows.
CREATE TABLE ingest_checkpoints (
    source_key TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE ingest_runs (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,             -- running, done, failed, interrupted
    seen        INTEGER NOT NULL DEFAULT 0,
    added       INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    problems    TEXT NOT NULL DEFAULT '[]'  -- JSON: the first problems, for `papersift stats`
);
