-- A reader's feed settings: muted keywords, authors and categories, a collection to seed the feed
-- from, and when they last reset their recommendations (signal older than that is ignored).
CREATE TABLE mutes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('keyword', 'author', 'category')),
    value      TEXT NOT NULL COLLATE NOCASE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, value)
) WITHOUT ROWID;

CREATE TABLE feed_settings (
    user_id         INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    reset_at        TEXT,
    seed_collection INTEGER REFERENCES collections (id) ON DELETE SET NULL,
    categories      TEXT NOT NULL DEFAULT ''
);
