-- An accepted increase holds its extra hours from the answer until the brokerage applies the change
-- (PackageChanged) or withdraws it (decision 0160): two increases accepted at once each took the
-- free hours they saw, and the second, applied, broke the capacity check and was dead-lettered.
ALTER TABLE change_offers ADD COLUMN held_hours numeric(7,2) NOT NULL DEFAULT 0 CHECK (held_hours >= 0);
