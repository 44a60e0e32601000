ALTER TABLE otp_inbox DROP COLUMN form_type;
ALTER TABLE otp_inbox DROP COLUMN pan;
ALTER TABLE otp_inbox DROP COLUMN purpose;

DROP INDEX otp_challenges_by_session;
ALTER TABLE otp_challenges DROP COLUMN form_type;
ALTER TABLE otp_challenges DROP COLUMN pan;
ALTER TABLE otp_challenges DROP COLUMN session_id;
ALTER TABLE otp_challenges DROP COLUMN purpose;
