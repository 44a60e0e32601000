-- Pending EVC codes must not outlive the column that tells them from session OTPs: an older
-- gateway would let one open a session.
UPDATE otp_challenges SET state = 'voided', attempts_left = 0 WHERE purpose = 'evc' AND state = 'pending';
DELETE FROM otp_inbox WHERE purpose = 'evc';

ALTER TABLE otp_inbox DROP COLUMN form_type;
ALTER TABLE otp_inbox DROP COLUMN pan;
ALTER TABLE otp_inbox DROP COLUMN purpose;

DROP INDEX otp_challenges_by_session;
ALTER TABLE otp_challenges DROP COLUMN form_type;
ALTER TABLE otp_challenges DROP COLUMN pan;
ALTER TABLE otp_challenges DROP COLUMN session_id;
ALTER TABLE otp_challenges DROP COLUMN purpose;
