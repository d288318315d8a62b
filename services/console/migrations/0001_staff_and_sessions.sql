-- The console's own data: staff accounts, sign-in sessions (staff and provider portal), and a
-- record of sign-in attempts (for throttling guessing and for audit). Nothing about packages or
-- people: those stay in the services, reached through their HTTP APIs.

CREATE TABLE staff (
    username          text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name      text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role              text NOT NULL CHECK (role IN ('broker', 'ops', 'admin')),
    password_hash     text NOT NULL,
    active            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text,
    last_signed_in_at timestamptz
);

-- Only a hash of the session token is stored: a copy of this table does not sign anyone in.
-- A provider's API credential is kept here, server-side, for the life of its portal session
-- (it never reaches the browser) and goes with the row at sign-out or expiry.
CREATE TABLE sessions (
    token_hash          bytea PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('staff', 'provider')),
    username            text REFERENCES staff (username) ON DELETE CASCADE,
    provider_id         text,
    provider_credential text,
    csrf_token          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    CHECK ((kind = 'staff') = (username IS NOT NULL)),
    CHECK ((kind = 'provider') = (provider_id IS NOT NULL AND provider_credential IS NOT NULL))
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE sign_in_attempts (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL,
    who       text NOT NULL,
    succeeded boolean NOT NULL
);
CREATE INDEX sign_in_attempts_recent ON sign_in_attempts (who, at);
