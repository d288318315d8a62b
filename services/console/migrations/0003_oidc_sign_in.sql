-- Staff sign in through the council's identity provider (OpenID Connect, authorization code with
-- PKCE): they have no console account, so their session carries who they are and their role, as the
-- ID token said at sign-in (idp_subject is the issuer's stable id for them), and that ID token,
-- sealed with a key derived from the session's own token, for ending their session at the identity
-- provider at sign-out. The console's own password accounts stay for an installation without one.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_username_fkey;
ALTER TABLE sessions
    ADD COLUMN idp_subject      text,
    ADD COLUMN idp_display_name text,
    ADD COLUMN idp_role         text,
    ADD COLUMN id_token_sealed  text,
    ADD CONSTRAINT sessions_idp_staff CHECK (idp_subject IS NULL OR (kind = 'staff' AND idp_role IS NOT NULL));

-- The identity provider's brokerage roles (services/console/domain.py), for local accounts too.
ALTER TABLE staff DROP CONSTRAINT IF EXISTS staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('broker', 'senior_broker', 'manager', 'head_of_service', 'ops', 'admin'));

-- A sign-in on its way through the identity provider: its state, nonce and PKCE code verifier,
-- kept here (never in the browser) under the hash of a random value held in the browser's cookie,
-- so the answer is accepted only in the browser that asked (no login CSRF), once, within minutes.
CREATE TABLE oidc_sign_ins (
    key_hash              bytea PRIMARY KEY,
    state                 text NOT NULL,
    nonce                 text NOT NULL,
    code_verifier_sealed  text NOT NULL,
    next                  text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz NOT NULL
);
CREATE INDEX oidc_sign_ins_expiry ON oidc_sign_ins (expires_at);
