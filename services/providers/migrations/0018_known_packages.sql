-- The packages the brokerage has requested (PackageRequested, decision 0130): what a safeguarding
-- concern, or any other request naming a package, is checked against, so that a concern about a
-- package that does not exist is refused rather than queued for nobody. Only the id and when: no
-- personal detail. Packages offered before this table existed come from the offers they made.
CREATE TABLE known_packages (
    package_id   uuid PRIMARY KEY,
    requested_at timestamptz NOT NULL
);

INSERT INTO known_packages (package_id, requested_at)
SELECT package_id, min(received_at) FROM offers GROUP BY package_id
ON CONFLICT DO NOTHING;
INSERT INTO known_packages (package_id, requested_at)
SELECT package_id, now() FROM placements
ON CONFLICT DO NOTHING;
INSERT INTO known_packages (package_id, requested_at)
SELECT package_id, min(raised_at) FROM concerns WHERE package_id IS NOT NULL GROUP BY package_id
ON CONFLICT DO NOTHING;
