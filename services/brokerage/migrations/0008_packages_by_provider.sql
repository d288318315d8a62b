-- A provider's packages: marked for re-brokering when it is suspended or leaves, and the marks
-- not yet acted on removed when it is active again - which every update of an active provider
-- (each placement changes its committed hours) checks, so it must not scan the packages.
CREATE INDEX packages_provider ON packages (provider_id) WHERE provider_id IS NOT NULL;
