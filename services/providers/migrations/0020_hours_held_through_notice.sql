-- A package handed back leaves its provider at once (it is brokered again), but the provider keeps
-- visiting until its notice's last day, paid for it: the placement's hours stay committed until then
-- and are released on the day after, by the endings timer (decision 0159). hours_held_until is that
-- last day; hours_released_at says when they were given back. Placements ended before this column
-- existed released their hours when they ended.
ALTER TABLE placements
    ADD COLUMN hours_held_until date,
    ADD COLUMN hours_released_at timestamptz;

CREATE INDEX placements_hours_held ON placements (hours_held_until)
    WHERE hours_held_until IS NOT NULL AND hours_released_at IS NULL;
