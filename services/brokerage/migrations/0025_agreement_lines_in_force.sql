-- The payer lines of every service agreement record in force and agreed, one row a line of a funding
-- part (decision record 0131): what the finance team's weekly commitment sums. Derived from
-- service_agreements, which stays append-only and the record of truth: insert_agreement, in the
-- transaction that appends a record, deletes the lines of the record it supersedes and adds the new
-- record's lines if it is agreed. Summing these narrow rows replaces deriving "in force" (no later
-- record supersedes it) and unnesting the funding JSON of every record on each view: about a second
-- with 45,000 agreements, most of it JIT compilation the planner chose because it could not
-- estimate the unnested rows.
CREATE TABLE agreement_lines_in_force (
    record_id       uuid NOT NULL REFERENCES service_agreements (record_id),
    part_no         integer NOT NULL,          -- the funding part's place in the record (0-based)
    line_no         integer NOT NULL,          -- the payer line's place in its part (0-based)
    package_id      uuid NOT NULL,
    provider_id     text NOT NULL,
    payer           text NOT NULL,
    pounds_per_week numeric NOT NULL,          -- pounds per week, as recorded
    start_date      date NOT NULL,             -- the agreement's dates (UK, inclusive)
    end_date        date,
    effective_from  date NOT NULL,             -- the funding part's dates (UK, inclusive)
    effective_to    date,
    PRIMARY KEY (record_id, part_no, line_no)
);

INSERT INTO agreement_lines_in_force (record_id, part_no, line_no, package_id, provider_id, payer, pounds_per_week,
                                      start_date, end_date, effective_from, effective_to)
SELECT s.record_id, part.no - 1, line.no - 1, s.package_id, s.provider_id, line.value->>'payer',
       (line.value->>'pounds_per_week')::numeric, s.start_date, s.end_date,
       (part.value->>'effective_from')::date, (part.value->>'effective_to')::date
  FROM service_agreements s
 CROSS JOIN LATERAL jsonb_array_elements(s.funding) WITH ORDINALITY AS part (value, no)
 CROSS JOIN LATERAL jsonb_array_elements(part.value->'lines') WITH ORDINALITY AS line (value, no)
 WHERE s.status = 'agreed'
   AND NOT EXISTS (SELECT 1 FROM service_agreements later WHERE later.supersedes = s.record_id);
