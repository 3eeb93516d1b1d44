-- A reader's feed settings: mutes (compared without case, like SQLite's COLLATE NOCASE) and the rest.
CREATE TABLE mutes (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('keyword', 'author', 'category')),
    value      text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX mutes_key ON mutes (user_id, kind, lower(value));

CREATE TABLE feed_settings (
    user_id         bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    reset_at        timestamptz,
    seed_collection bigint REFERENCES collections (id) ON DELETE SET NULL,
    categories      text NOT NULL DEFAULT ''
);
