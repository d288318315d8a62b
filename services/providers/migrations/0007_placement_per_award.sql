-- A placement per award, not per package: a package handed back, re-brokered after a suspension
-- or re-offered is placed again, and the new provider needs a placement of its own (the old
-- primary key on package_id silently dropped it: no hours committed, the person's details refused).
-- At most one placement of a package is live (ended_at NULL): the one the brokerage says holds it.
ALTER TABLE placements ADD COLUMN offer_round integer;
-- Existing placements: the round the provider won, from its offers (0 if none is recorded).
UPDATE placements p SET offer_round = coalesce(
    (SELECT max(o.offer_round) FROM offers o
      WHERE o.package_id = p.package_id AND o.provider_id = p.provider_id AND o.status = 'won'), 0);
ALTER TABLE placements ALTER COLUMN offer_round SET NOT NULL;
ALTER TABLE placements RENAME COLUMN cancelled_at TO ended_at;
ALTER TABLE placements ADD COLUMN end_reason text
    CHECK (end_reason IN ('cancelled', 'handed_back', 'reopened', 'replaced'));
UPDATE placements SET end_reason = 'cancelled' WHERE ended_at IS NOT NULL;
ALTER TABLE placements DROP CONSTRAINT placements_pkey;
ALTER TABLE placements ADD PRIMARY KEY (package_id, offer_round);
CREATE UNIQUE INDEX placements_one_live ON placements (package_id) WHERE ended_at IS NULL;
CREATE INDEX placements_provider_live ON placements (provider_id) WHERE ended_at IS NULL;
