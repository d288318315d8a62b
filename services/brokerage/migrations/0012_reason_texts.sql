-- Reasons are codes from fixed vocabularies (schemas/vocabulary.py) on the events; the words a
-- broker may add stay here, beside the code, readable through the brokerage's API only.
-- (A hand-back's words are kept in its timeline entry.)
ALTER TABLE packages ADD COLUMN cancel_reason_text text;
ALTER TABLE exceptions ADD COLUMN reason_text text;
