-- Hospital discharge (decision 0097): what the Discharge Hub said of a package's discharge (codes
-- only: hospital, ward, pathway; the medically-fit UK date), and its referral to one of the council's
-- in-house services (reablement first, or the fallback at the deadline), held until a provider's
-- care starts (released_on) or the package is cancelled. The fallback's deadline is a column of
-- packages, like every other timer, so a restart loses none and SKIP LOCKED fires it once.
CREATE TABLE discharges (
    package_id            uuid PRIMARY KEY REFERENCES packages (package_id),
    hospital              text NOT NULL,
    ward                  text NOT NULL,
    pathway               smallint NOT NULL CHECK (pathway BETWEEN 0 AND 3),
    medically_fit_on      date NOT NULL,
    reablement_potential  boolean NOT NULL,
    nhs_funded_weeks      smallint NOT NULL CHECK (nhs_funded_weeks BETWEEN 0 AND 8),
    fallback_due_at       timestamptz NOT NULL,
    fallback_outcome      text CHECK (fallback_outcome IN ('referred', 'full', 'not_needed')),
    service               text CHECK (service IN ('reablement', 'crisis_response')),
    step                  text CHECK (step IN ('reablement_first', 'fallback')),
    referred_on           date,
    referred_at           timestamptz,
    referred_hours        numeric(5, 2),
    released_on           date,
    released_at           timestamptz,
    CHECK ((service IS NULL) = (referred_on IS NULL)),
    CHECK (released_on IS NULL OR service IS NOT NULL)
);
-- An in-house service's load: the hours of the referrals it holds.
CREATE INDEX discharges_held ON discharges (service, released_on) WHERE service IS NOT NULL;

ALTER TABLE packages ADD COLUMN discharge_fallback_at timestamptz;
CREATE INDEX packages_discharge_fallback ON packages (discharge_fallback_at)
    WHERE discharge_fallback_at IS NOT NULL;
