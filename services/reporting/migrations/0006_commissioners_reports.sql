-- Reports for commissioners (decision 0105): the zones and bands each provider serves (from
-- ProviderUpdated, for coverage), and every change to the providers' quality and risk register
-- (ProviderQualityRecorded, decision 0103) with the register after it, for the trend of risk and
-- quality. Codes, counts and scores only, as the events carry.
ALTER TABLE providers
    ADD COLUMN zones text[] NOT NULL DEFAULT '{}',
    ADD COLUMN bands text[] NOT NULL DEFAULT '{}';

CREATE TABLE provider_quality (
    event_id               uuid PRIMARY KEY,
    provider_id            text NOT NULL,
    change                 text NOT NULL,
    cqc_rating             text NOT NULL,
    cqc_inspected_on       date,
    local_risk             text NOT NULL,
    quality_score          numeric NOT NULL,
    hand_backs_12m         integer NOT NULL,
    late_starts_12m        integer NOT NULL,
    open_complaints        integer NOT NULL,
    open_improvement_plans integer NOT NULL,
    recorded_at            timestamptz NOT NULL
);
CREATE INDEX provider_quality_provider ON provider_quality (provider_id, recorded_at);
CREATE INDEX placements_zone_time ON placements (zone, placed_at) INCLUDE (provider_id, hours_per_week);
