-- The recipients' locks, defined once (decision 0145): they serialise planning a message with
-- registering its contact (repository.lock_recipients), per recipient, taken in the order given
-- (the caller sorts the keys: two plans naming the same recipients cannot deadlock). The keys are
-- those the service took with its own statement before this migration (a service of the earlier
-- version, still running during a deploy, waits on the same locks).
CREATE FUNCTION lock_recipients(kinds text[], ids text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('notifications.recipient'), hashtext(t.k || ':' || t.r))
       FROM unnest(kinds, ids) WITH ORDINALITY AS t(k, r, n) ORDER BY t.n;
END
$$;

-- The recipients of a message planned: their locks taken, then their contacts read (with the names
-- of the providers the words mention), in one call. The read must come after the locks and see a
-- contact registered by the transaction it waited for: a VOLATILE PL/pgSQL function takes a fresh
-- snapshot for each statement in it (READ COMMITTED); one SQL statement holding both would read
-- with the snapshot taken before the locks were granted.
CREATE FUNCTION locked_recipients(kinds text[], ids text[], named text[]) RETURNS SETOF recipients
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM lock_recipients(kinds, ids);
    RETURN QUERY
        SELECT rc.* FROM recipients rc
         WHERE (rc.kind, rc.recipient_id) IN (SELECT t.k, t.i FROM unnest(kinds, ids) AS t(k, i))
            OR (rc.kind = 'provider' AND rc.recipient_id = ANY(named));
END
$$;
