ALTER TABLE sessions DROP COLUMN gstn_token_expires_at;
