-- Indexes for the KPI queries over years of history (the five generated years of `homecare
-- reporting bench`: about 50,000 packages, 200,000 answers, 110,000 milestones). Each lets a
-- query read only its period's rows, or read them from the index alone, where it scanned a table.

-- Starts per week in a period (starts_in_period) and in a cohort (starts_by_week).
CREATE INDEX milestones_type_on_date ON milestones (event_type, on_date) INCLUDE (package_id);
-- The cohort's milestones by package (replaces milestones_package: the same key, with the
-- columns the KPIs read).
CREATE INDEX milestones_package_type ON milestones (package_id, event_type) INCLUDE (on_date, occurred_at, decision);
DROP INDEX milestones_package;
-- A cohort's declines and bidders (declines, bidders): answers by package, covering.
CREATE INDEX answers_package_kind ON answers (package_id, kind) INCLUDE (reason, provider_id);
DROP INDEX answers_package;
-- The decline mix per week (declines_by_week): answers of a kind in a period.
CREATE INDEX answers_kind_time ON answers (kind, answered_at) INCLUDE (package_id, reason);
-- In care at a period's end (in_care, spend_in_care_by_band): the packages not ended by then -
-- a few thousand running, not every package ever placed.
CREATE INDEX packages_not_ended_by ON packages ((coalesce(ended_on, 'infinity'::date)), placed_at)
    WHERE placed_at IS NOT NULL;
