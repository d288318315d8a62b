-- The recipients of a message planned: each one's lock taken, then their contacts read (with the
-- names of the providers the words mention), in one call (decision 0145). The locks serialise planning a message with registering its contact
-- (repository.lock_recipients); the read must come after them and see a contact registered by the
-- transaction it waited for. A VOLATILE PL/pgSQL function takes a fresh snapshot for each
-- statement in it (READ COMMITTED); one SQL statement holding both would read with the snapshot
-- taken before the locks were granted.
CREATE FUNCTION locked_recipients(kinds text[], ids text[], named text[]) RETURNS SETOF recipients
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    -- In the order given (the caller sorts: two plans naming the same recipients cannot deadlock),
    -- on the same keys as repository.lock_recipients.
    PERFORM pg_advisory_xact_lock(hashtext('notifications.recipient'), hashtext(t.k || ':' || t.r))
       FROM unnest(kinds, ids) WITH ORDINALITY AS t(k, r, n) ORDER BY t.n;
    RETURN QUERY
        SELECT rc.* FROM recipients rc
         WHERE (rc.kind, rc.recipient_id) IN (SELECT t.k, t.i FROM unnest(kinds, ids) AS t(k, i))
            OR (rc.kind = 'provider' AND rc.recipient_id = ANY(named));
END
$$;
