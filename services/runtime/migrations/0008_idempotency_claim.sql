-- A command's Idempotency-Key claimed in one round trip (decision 0145): the advisory lock that
-- makes requests with one key wait for each other, then the read of the key's stored response.
-- Two statements sent from the service were two round trips; here they are one call. The read
-- must come after the lock and see what the request it waited for committed: a VOLATILE PL/pgSQL
-- function takes a fresh snapshot for each statement it runs (READ COMMITTED), which one SQL
-- statement holding both would not.
CREATE FUNCTION idempotency_claim(claim_scope text, claim_key text, since timestamptz)
RETURNS TABLE (request_hash text, response jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    -- The same lock key as the services took themselves before this function (a service of the
    -- earlier version, still running during a deploy, waits on the same lock).
    PERFORM pg_advisory_xact_lock(hashtextextended('idempotency:' || claim_scope || E'\n' || claim_key, 0));
    RETURN QUERY
        SELECT k.request_hash, k.response FROM idempotency_keys k
         WHERE k.scope = claim_scope AND k.key = claim_key AND k.created_at > since;
END
$$;
