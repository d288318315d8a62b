-- The hand-back and late-start record is the source of "hand-backs in the last 12 months" (decision
-- 0119): the profile's count is derived from it as of a day, never counted up. A hand-back the seed
-- file dates (deploy/reference/quality-register.yaml, from before the platform) has no package: it
-- is recorded with source 'seed'. One row per incident; a package's incident is still recorded once.
ALTER TABLE delivery_incidents DROP CONSTRAINT delivery_incidents_pkey;
ALTER TABLE delivery_incidents ADD COLUMN incident_id bigserial PRIMARY KEY;
ALTER TABLE delivery_incidents ALTER COLUMN package_id DROP NOT NULL;
ALTER TABLE delivery_incidents
    ADD COLUMN source text NOT NULL DEFAULT 'brokerage' CHECK (source IN ('brokerage', 'seed')),
    ADD CONSTRAINT delivery_incidents_package_unless_seeded CHECK ((package_id IS NULL) = (source = 'seed'));
CREATE UNIQUE INDEX delivery_incidents_once ON delivery_incidents (provider_id, package_id, kind, on_date);
CREATE INDEX delivery_incidents_dated ON delivery_incidents (provider_id, kind, on_date);
