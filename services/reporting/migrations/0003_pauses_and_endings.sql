-- Pauses and endings (decision 0078): PackagePaused, PackageResumed and PackageEnded are rows of
-- milestones like the other lifecycle events; the package's row says when it ended for good (the
-- first UK day without care, so it leaves "in care" from then) and why, and how often it paused.
ALTER TABLE packages
    ADD COLUMN ended_on    date,
    ADD COLUMN end_reason  text,
    ADD COLUMN pauses      integer NOT NULL DEFAULT 0;
