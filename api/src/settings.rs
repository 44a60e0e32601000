//! Typed settings, built once: defaults, then an optional TOML file, then environment and flags.

use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

/// How OTPs reach the taxpayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OtpDelivery {
    /// Shown to the logged-in taxpayer at `GET /v1/taxpayer/otp-requests`.
    Inbox,
    /// POSTed to `otp_webhook_url` (an SMS or e-mail service).
    Webhook,
    /// Written to the server log (development only).
    Log,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object a line.
    Json,
}

/// Loopback and private networks: where a reverse proxy in front of the gateway runs (the compose file's
/// nginx, a Kubernetes ingress), and where no stranger on the internet connects from.
pub const DEFAULT_TRUSTED_PROXIES: [&str; 6] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

/// Everything the gateway is configured with. See the README's configuration table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Listen address.
    pub bind: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Bearer token of the operator API; the admin API answers 404 when unset.
    pub admin_token: Option<String>,
    /// Connections in the database pool.
    pub db_pool_size: u32,
    /// How long a request waits for a database connection before 503.
    pub db_timeout_ms: u64,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Requests that may wait for a password hash or an RSA decryption while one runs per core; more
    /// are answered 503 at once.
    pub heavy_work_queue: usize,
    /// Peers (addresses or CIDR ranges) whose `X-Forwarded-For` names the client
    /// recorded in the audit log; any other peer is recorded as itself.
    pub trusted_proxies: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// `iss` of every token the gateway issues.
    pub issuer: String,
    /// Lifetime of a GSP session (access) token, never past the access window.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a taxpayer token.
    pub taxpayer_token_ttl_secs: u64,
    /// Password lifetime in days.
    pub password_lifetime_days: u32,
    /// Consecutive failed logins that lock an account.
    pub lockout_threshold: u32,
    /// How long a locked account stays locked.
    pub lockout_minutes: u32,
    /// OTP delivery channel.
    pub otp_delivery: OtpDelivery,
    /// Where the webhook channel POSTs.
    pub otp_webhook_url: Option<String>,
    /// Timeout of one webhook delivery.
    pub otp_webhook_timeout_ms: u64,
    /// OTP requests allowed per taxpayer and GSP within the window below.
    pub otp_rate_limit: u32,
    /// The OTP request rate window.
    pub otp_rate_window_minutes: u32,
    /// Active sessions allowed per taxpayer and GSP.
    pub session_cap: u32,
    /// Gateway requests per second per session.
    pub session_rate_per_second: u32,
    /// Gateway burst per session.
    pub session_burst: u32,
    /// Gateway requests per second per GSP client.
    pub client_rate_per_second: u32,
    /// Gateway burst per GSP client.
    pub client_burst: u32,
    /// Upstream GST service; the built-in sandbox answers when unset.
    pub upstream_url: Option<String>,
    /// PEM file of CA certificates trusted for an https:// upstream, besides the system's.
    pub upstream_ca_file: Option<String>,
    /// Connect timeout towards the upstream.
    pub upstream_connect_timeout_ms: u64,
    /// Total timeout of one upstream call.
    pub upstream_timeout_ms: u64,
    /// How often the change feed is polled for other instances' writes.
    pub change_feed_interval_ms: u64,
    /// GST System dialect: a fixed OTP for every dialect OTP request (the GSTN sandbox used `102030`);
    /// unset, dialect OTPs are random like the REST face's. Never set it in production.
    pub gstn_sandbox_otp: Option<String>,
    /// GST System dialect: minutes an `auth_token` lives (and the `expiry` answered), like GSTN's 360.
    pub gstn_token_expiry_minutes: u32,
    /// GST System dialect: answer `expiry` as the remaining access window in minutes (what the live
    /// system reports) instead of the token's lifetime.
    pub gstn_expiry_from_access: bool,
    /// GST System dialect: answer `status_cd` as a number (1/0) instead of a string ("1"/"0").
    pub gstn_numeric_status_cd: bool,
    /// GST System dialect: authenticate calls (each an RSA decryption or a write) per second per GSP
    /// client, and their burst.
    pub gstn_authenticate_rate_per_second: u32,
    /// See `gstn_authenticate_rate_per_second`.
    pub gstn_authenticate_burst: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://gsp-gateway.db".into(),
            admin_token: None,
            db_pool_size: 8,
            db_timeout_ms: 3_000,
            workers: None,
            max_body_bytes: 1024 * 1024,
            heavy_work_queue: 64,
            trusted_proxies: DEFAULT_TRUSTED_PROXIES.iter().map(|&r| r.to_owned()).collect(),
            log_format: LogFormat::Text,
            issuer: "gsp-gateway".into(),
            access_token_ttl_secs: 6 * 3600,
            taxpayer_token_ttl_secs: 30 * 60,
            password_lifetime_days: 120,
            lockout_threshold: 5,
            lockout_minutes: 15,
            otp_delivery: OtpDelivery::Inbox,
            otp_webhook_url: None,
            otp_webhook_timeout_ms: 5_000,
            otp_rate_limit: 5,
            otp_rate_window_minutes: 15,
            session_cap: 3,
            session_rate_per_second: 20,
            session_burst: 40,
            client_rate_per_second: 200,
            client_burst: 400,
            upstream_url: None,
            upstream_ca_file: None,
            upstream_connect_timeout_ms: 2_000,
            upstream_timeout_ms: 30_000,
            change_feed_interval_ms: 250,
            gstn_sandbox_otp: None,
            gstn_token_expiry_minutes: 360,
            gstn_expiry_from_access: false,
            gstn_numeric_status_cd: false,
            gstn_authenticate_rate_per_second: 10,
            gstn_authenticate_burst: 50,
        }
    }
}

impl Settings {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The database checkout timeout.
    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    /// Checks combinations a single field cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.otp_delivery == OtpDelivery::Webhook && self.otp_webhook_url.is_none() {
            return Err("otp_delivery = webhook needs otp_webhook_url".into());
        }
        if self.session_rate_per_second == 0 || self.client_rate_per_second == 0 {
            return Err("rates must be at least 1 per second".into());
        }
        if self.gstn_authenticate_rate_per_second == 0 || self.gstn_authenticate_burst == 0 {
            return Err("the GST System authenticate rate and burst must be at least 1".into());
        }
        if self.session_burst == 0 || self.client_burst == 0 {
            return Err("bursts must be at least 1".into());
        }
        if self
            .gstn_sandbox_otp
            .as_deref()
            .is_some_and(|otp| !gsp_gateway_domain::OtpCode::is_well_formed(otp))
        {
            return Err("gstn_sandbox_otp must be 6 digits".into());
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err("the admin token must have at least 16 characters".into());
        }
        if let Some(url) = self.upstream_url.as_deref() {
            crate::gateway::forward::check_upstream_url(url)?;
        }
        crate::auth::TrustedProxies::parse(&self.trusted_proxies)?;
        Ok(())
    }
}

/// Flags of `serve`; each is also read from the environment variable it names.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Listen address [default: 127.0.0.1:8080]
    #[arg(long, global = true, env = "GSP_GATEWAY_BIND")]
    pub bind: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://gsp-gateway.db]
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Operator API bearer token (at least 16 characters); the admin API is off without it
    #[arg(long, global = true, env = "GSP_GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Database pool size [default: 8]
    #[arg(long, global = true, env = "GSP_GATEWAY_DB_POOL_SIZE")]
    pub db_pool_size: Option<u32>,
    /// Milliseconds to wait for a database connection before answering 503 [default: 3000]
    #[arg(long, global = true, env = "GSP_GATEWAY_DB_TIMEOUT_MS")]
    pub db_timeout_ms: Option<u64>,
    /// HTTP worker threads [default: one per core]
    #[arg(long, global = true, env = "GSP_GATEWAY_WORKERS")]
    pub workers: Option<usize>,
    /// Largest accepted request body in bytes [default: 1048576]
    #[arg(long, global = true, env = "GSP_GATEWAY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format [default: text]
    #[arg(long, global = true, env = "GSP_GATEWAY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Session (access) token lifetime in seconds [default: 21600]
    #[arg(long, global = true, env = "GSP_GATEWAY_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// Password lifetime in days [default: 120]
    #[arg(long, global = true, env = "GSP_GATEWAY_PASSWORD_LIFETIME_DAYS")]
    pub password_lifetime_days: Option<u32>,
    /// Failed logins that lock an account [default: 5]
    #[arg(long, global = true, env = "GSP_GATEWAY_LOCKOUT_THRESHOLD")]
    pub lockout_threshold: Option<u32>,
    /// Minutes an account stays locked [default: 15]
    #[arg(long, global = true, env = "GSP_GATEWAY_LOCKOUT_MINUTES")]
    pub lockout_minutes: Option<u32>,
    /// OTP delivery channel [default: inbox]
    #[arg(long, global = true, env = "GSP_GATEWAY_OTP_DELIVERY", value_enum)]
    pub otp_delivery: Option<OtpDelivery>,
    /// URL the webhook channel POSTs OTPs to
    #[arg(long, global = true, env = "GSP_GATEWAY_OTP_WEBHOOK_URL")]
    pub otp_webhook_url: Option<String>,
    /// Active sessions allowed per taxpayer and GSP [default: 3]
    #[arg(long, global = true, env = "GSP_GATEWAY_SESSION_CAP")]
    pub session_cap: Option<u32>,
    /// Gateway requests per second per session [default: 20]
    #[arg(long, global = true, env = "GSP_GATEWAY_SESSION_RATE_PER_SECOND")]
    pub session_rate_per_second: Option<u32>,
    /// Gateway burst per session [default: 40]
    #[arg(long, global = true, env = "GSP_GATEWAY_SESSION_BURST")]
    pub session_burst: Option<u32>,
    /// Gateway requests per second per GSP client [default: 200]
    #[arg(long, global = true, env = "GSP_GATEWAY_CLIENT_RATE_PER_SECOND")]
    pub client_rate_per_second: Option<u32>,
    /// Gateway burst per GSP client [default: 400]
    #[arg(long, global = true, env = "GSP_GATEWAY_CLIENT_BURST")]
    pub client_burst: Option<u32>,
    /// Upstream GST service URL, http:// or https://; the built-in sandbox answers when unset
    #[arg(long, global = true, env = "GSP_GATEWAY_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// PEM file of CA certificates to trust for an https:// upstream, besides the system's
    #[arg(long, global = true, env = "GSP_GATEWAY_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<String>,
    /// Total upstream timeout in milliseconds [default: 30000]
    #[arg(long, global = true, env = "GSP_GATEWAY_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: Option<u64>,
    /// Change-feed poll interval in milliseconds [default: 250]
    #[arg(long, global = true, env = "GSP_GATEWAY_CHANGE_FEED_INTERVAL_MS")]
    pub change_feed_interval_ms: Option<u64>,
    /// GST System dialect: fixed sandbox OTP, e.g. 102030 (development only)
    #[arg(long, global = true, env = "GSP_GATEWAY_GSTN_SANDBOX_OTP")]
    pub gstn_sandbox_otp: Option<String>,
    /// Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For
    /// names the client; an empty value trusts none [default: loopback and private networks]
    #[arg(
        long,
        global = true,
        env = "GSP_GATEWAY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
}

macro_rules! overlay {
    ($settings:ident, $args:ident, [$($field:ident),* $(,)?], [$($optional:ident),* $(,)?]) => {
        $( if let Some(value) = $args.$field { $settings.$field = value; } )*
        $( if $args.$optional.is_some() { $settings.$optional = $args.$optional; } )*
    };
}

impl ServeArgs {
    /// Lays these flags (and environment variables) over `settings`.
    pub fn apply(self, mut settings: Settings) -> Settings {
        let args = self;
        overlay!(
            settings,
            args,
            [
                bind,
                database_url,
                db_pool_size,
                db_timeout_ms,
                max_body_bytes,
                log_format,
                access_token_ttl_secs,
                password_lifetime_days,
                lockout_threshold,
                lockout_minutes,
                otp_delivery,
                session_cap,
                session_rate_per_second,
                session_burst,
                client_rate_per_second,
                client_burst,
                upstream_timeout_ms,
                change_feed_interval_ms,
                trusted_proxies,
            ],
            [
                admin_token,
                workers,
                otp_webhook_url,
                upstream_url,
                upstream_ca_file,
                gstn_sandbox_otp
            ]
        );
        settings
    }
}
