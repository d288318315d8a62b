-- Packages cancelled, remembered so that a PackagePlaced replayed from dead letters after its
-- PackageCancelled commits no hours to a package that no longer exists.
CREATE TABLE cancelled_packages (
    package_id   uuid PRIMARY KEY,
    cancelled_at timestamptz NOT NULL
);
