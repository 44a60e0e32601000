-- The GST System dialect's auth token lives 360 minutes (refreshable until the window ends).
ALTER TABLE sessions ADD COLUMN gstn_token_expires_at TIMESTAMP;
