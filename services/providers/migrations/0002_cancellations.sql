-- A placement cancelled before care started gives the provider its hours back.
ALTER TABLE placements ADD COLUMN cancelled_at timestamptz;
