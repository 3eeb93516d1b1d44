-- Every email papersift sends to a subscription (a confirmation request or a digest): one row per
-- (subscription, kind, period). notify/send.py claims the row, holding the exact message, before the
-- message goes to the SMTP server and marks it sent right after, so a digest goes out once per period
-- even when the sender crashes and is run again (the row of an unfinished claim is resent as it is).
CREATE TABLE mailings (
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('confirm', 'digest')),
    period      TEXT NOT NULL,             -- digest: 2026-07-01 (daily) or 2026-W27 (weekly); confirm: the day asked
    status      TEXT NOT NULL CHECK (status IN ('claimed', 'sent', 'failed')),
    message_id  TEXT NOT NULL,             -- deterministic: a resent message carries the same one
    message     BLOB,                      -- the message's bytes while claimed; cleared once sent or failed
    paper_ids   TEXT NOT NULL DEFAULT '[]',  -- JSON: the papers in this digest (row ids), never mailed again
    through     TEXT,                      -- the last listing day this digest covered
    owner       TEXT,                      -- the run holding the claim
    lease_until TEXT,                      -- until when; another run takes over a claim whose lease ran out
    attempts    INTEGER NOT NULL DEFAULT 0,
    claimed_at  TEXT NOT NULL,
    sent_at     TEXT,
    error       TEXT,                      -- the last failure (a refusal, or why a try was given up)
    PRIMARY KEY (subscription_id, kind, period)
) WITHOUT ROWID;
