-- Sign-in throttling that holds under concurrency and cannot be used to lock a stranger out:
-- each attempt is recorded BEFORE its password is checked (succeeded NULL while being checked),
-- with the address it came from, so counts by (account, address), by address and by account
-- include the attempts in flight (services/console/handlers.py, domain.SignInLimits).
ALTER TABLE sign_in_attempts ADD COLUMN address text NOT NULL DEFAULT '';
ALTER TABLE sign_in_attempts ALTER COLUMN succeeded DROP NOT NULL;
CREATE INDEX sign_in_attempts_address ON sign_in_attempts (address, at);

-- A provider's API credential is no longer kept readable in its portal session: it is sealed with
-- a key derived from the session's own token, which only the browser holds (the row keeps the
-- token's hash), so the table alone opens nothing. Portal sessions from before are ended.
DELETE FROM sessions WHERE kind = 'provider';
ALTER TABLE sessions RENAME COLUMN provider_credential TO provider_credential_sealed;

-- A one-off message for the session's next page (a refused action), written by the console itself:
-- messages on pages come from the services' answers and the console's own texts, never from the URL.
ALTER TABLE sessions ADD COLUMN flash text;
