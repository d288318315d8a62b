-- The quality score's inputs at the time of each offer (decision 0103): the decision record keeps,
-- per provider offered, the score with its components' inputs and points and the weights used, so
-- the award's explanation can say why ("CQC rating Requires improvement (inspected 2026-10-03): 35
-- points"). The register's dates the profile does not carry come from ProviderQualityRecorded.
ALTER TABLE offer_rounds ADD COLUMN quality_inputs jsonb NOT NULL DEFAULT '{}';
CREATE TABLE provider_quality (
    provider_id            text PRIMARY KEY,
    cqc_inspected_on       date,
    local_risk_reviewed_on date,
    recorded_at            timestamptz NOT NULL
);
