-- The sandbox (decision 0116): a test package a provider's developer triggered is offered to that
-- provider alone. NULL for every real package; set only by POST /internal/sandbox/packages, which
-- answers only in a sandbox deployment (HOMECARE_SANDBOX=true).
ALTER TABLE packages ADD COLUMN sandbox_for text;
