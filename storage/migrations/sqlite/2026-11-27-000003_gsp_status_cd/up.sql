-- How a GSP's GST System software reads `status_cd`: true = a number (1/0), false = a string ("1"/"0"),
-- NULL = the server's setting (gstn_numeric_status_cd).
ALTER TABLE gsp_clients ADD COLUMN gstn_numeric_status_cd BOOLEAN;
