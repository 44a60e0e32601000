ALTER TABLE gsp_clients DROP COLUMN gstn_numeric_status_cd;
