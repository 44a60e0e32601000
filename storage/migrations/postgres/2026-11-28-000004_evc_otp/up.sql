-- EVC filing (gstn-dialect.md §3.7): an OTP the taxpayer gives to sign one filing, asked for within a
-- GSP session. `purpose` tells it from the OTP that opens a session; an EVC challenge names the
-- session that asked, the signatory's PAN and the form it signs.
ALTER TABLE otp_challenges ADD COLUMN purpose TEXT NOT NULL DEFAULT 'session';
ALTER TABLE otp_challenges ADD COLUMN session_id TEXT REFERENCES sessions (id);
ALTER TABLE otp_challenges ADD COLUMN pan TEXT;
ALTER TABLE otp_challenges ADD COLUMN form_type TEXT;
CREATE INDEX otp_challenges_by_session ON otp_challenges (session_id);

ALTER TABLE otp_inbox ADD COLUMN purpose TEXT NOT NULL DEFAULT 'session';
ALTER TABLE otp_inbox ADD COLUMN pan TEXT;
ALTER TABLE otp_inbox ADD COLUMN form_type TEXT;
