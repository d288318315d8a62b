-- The tie-break counts a few bidders' awards in a zone over 12 weeks (repository.bidders_now):
-- with the index by zone and date alone, PostgreSQL read every award of the zone in those weeks
-- and then each row to find the bidders'; in the benchmark, where a few minutes place thousands
-- of packages in a handful of zones, that count grew from a fifth of a millisecond a package to
-- two-thirds within three runs. By zone, provider and date it reads only the bidders' entries
-- (from the index alone once vacuum has marked the pages all-visible). Nothing else reads awards.
CREATE INDEX awards_by_zone_provider ON awards (zone, provider_id, awarded_at);
DROP INDEX awards_by_zone;
