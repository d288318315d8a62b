-- A provider handing a package back (with notice): the package is reopened with priority, a
-- continuity flag (the person already has care that must not lapse), and without that provider.
ALTER TABLE packages ADD COLUMN priority boolean NOT NULL DEFAULT false;
ALTER TABLE packages ADD COLUMN continuity boolean NOT NULL DEFAULT false;
ALTER TABLE packages ADD COLUMN excluded_providers text[] NOT NULL DEFAULT '{}';
