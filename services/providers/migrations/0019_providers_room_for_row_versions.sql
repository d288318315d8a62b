-- Each provider's row is updated by every bid and award (held and committed hours): a few dozen
-- rows, hundreds of new versions a minute under load. A new version stays on its row's page (a
-- HOT update: no new index entry) only if the page has room, and the versions that transactions
-- still running may see cannot be pruned to make it. Full pages sent a fifth of the updates to
-- other pages, and the primary key gathered an entry a version: a look-up of three providers read
-- about 190 pages. Pages filled to a tenth leave a row room for about ten versions (decision 0144).
ALTER TABLE providers SET (fillfactor = 10);
-- Rows written before keep their pages until the table is rewritten (a few dozen rows: at once).
CLUSTER providers USING providers_pkey;
