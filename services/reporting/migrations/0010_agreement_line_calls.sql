-- The daily calls a funder pays whole (decision record 0121: a payer line of basis 'calls'), which
-- the projection had dropped: the finance export could say that a line was paid by calls but not
-- which. NULL on every other line. Rows projected before this migration have NULL here until
-- `homecare reporting rebuild` replays their records.
ALTER TABLE service_agreement_lines ADD COLUMN calls integer[];
