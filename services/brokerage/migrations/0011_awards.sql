-- Every award (a package placed with a provider) with the package's zone and its time: the
-- ranking's tie-break counts each bidder's awards in the zone over the last 12 weeks
-- (decision record 0042), so the read is by zone and time.
CREATE TABLE awards (
    id           bigserial PRIMARY KEY,
    package_id   uuid NOT NULL REFERENCES packages (package_id),
    provider_id  text NOT NULL,
    zone         text NOT NULL,
    awarded_at   timestamptz NOT NULL
);
CREATE INDEX awards_by_zone ON awards (zone, awarded_at);

-- The awards made before this table existed, from the packages' timelines.
INSERT INTO awards (package_id, provider_id, zone, awarded_at)
SELECT t.package_id, t.detail->>'provider_id', p.zone, t.at
  FROM timeline t JOIN packages p USING (package_id)
 WHERE t.stage = 'placed' AND t.detail ? 'provider_id';

-- What broke ties when the round was ranked at its close: each bidder's recent awards in the
-- zone (and from when they were counted). NULL for rounds closed before the tie-break existed,
-- which were ranked by provider id: the explanation says so.
ALTER TABLE offer_rounds ADD COLUMN tie_break jsonb;
