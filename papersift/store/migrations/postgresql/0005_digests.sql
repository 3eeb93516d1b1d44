-- Every email sent to a subscription, one row per (subscription, kind, period): see
-- migrations/sqlite/0006_digests.sql and notify/send.py.
CREATE TABLE mailings (
    subscription_id bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('confirm', 'digest')),
    period      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('claimed', 'sent', 'failed')),
    message_id  text NOT NULL,
    message     bytea,                     -- while claimed; cleared once sent or failed
    paper_ids   bigint[] NOT NULL DEFAULT '{}',
    through     date,
    owner       text,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    claimed_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    error       text,
    PRIMARY KEY (subscription_id, kind, period)
);
