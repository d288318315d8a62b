-- Brokerage staff reading a person's details is a disclosure too: recorded with who read it.
-- A row is a provider's (provider and credential) or a staff member's (their name).
ALTER TABLE disclosures ADD COLUMN reader text NOT NULL DEFAULT 'provider' CHECK (reader IN ('provider', 'staff'));
ALTER TABLE disclosures ADD COLUMN staff_user text;
ALTER TABLE disclosures ALTER COLUMN provider_id DROP NOT NULL;
ALTER TABLE disclosures ALTER COLUMN credential_id DROP NOT NULL;
ALTER TABLE disclosures ADD CONSTRAINT disclosures_reader_named CHECK (
    (reader = 'provider' AND provider_id IS NOT NULL AND credential_id IS NOT NULL)
    OR (reader = 'staff' AND staff_user IS NOT NULL));
