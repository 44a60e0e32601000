//! The command line: `serve` (the default), `migrate`, `openapi`, `admin …`, `keys rotate`, `audit verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::TimeDelta;
use clap::{Parser, Subcommand};
use gsp_gateway_domain::PasswordHash;
use gsp_gateway_storage::repo::audit::{self, NewAuditEvent};
use gsp_gateway_storage::{DatabaseUrl, Db, PoolOptions, migrate, redact};
use tracing_subscriber::EnvFilter;

use crate::clock::Clock;
use crate::services::provisioning::{self, NewGsp, NewTaxpayer};
use crate::settings::{LogFormat, ServeArgs, Settings};
use crate::startup::Application;

/// gsp-gateway: the GST API-access gateway.
#[derive(Debug, Parser)]
#[command(name = "gsp-gateway", version, about)]
pub struct Cli {
    /// A TOML file of settings (flags and environment variables override it)
    #[arg(long, global = true, env = "GSP_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub args: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Print the OpenAPI document (YAML; --json for JSON)
    Openapi {
        /// Print JSON instead of YAML
        #[arg(long)]
        json: bool,
    },
    /// Provision taxpayers and GSP clients
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage signing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Operator provisioning from the command line.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a taxpayer
    CreateTaxpayer {
        /// GSTIN
        #[arg(long)]
        gstin: String,
        /// Portal username
        #[arg(long)]
        username: String,
        /// Initial password (or GSP_GATEWAY_NEW_PASSWORD)
        #[arg(long, env = "GSP_GATEWAY_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        /// Legal name of business
        #[arg(long)]
        legal_name: String,
        /// Trade name
        #[arg(long)]
        trade_name: Option<String>,
        /// E-mail
        #[arg(long)]
        email: Option<String>,
        /// Mobile
        #[arg(long)]
        mobile: Option<String>,
    },
    /// Create a GSP client and print its credentials (the secret is shown once)
    CreateGsp {
        /// Display name
        #[arg(long)]
        name: String,
    },
    /// Disable a GSP client: its credentials are refused and every session it holds ends at once
    DisableGsp {
        /// Client id
        #[arg(long)]
        client_id: String,
    },
    /// Re-enable a disabled GSP client (its ended sessions stay ended)
    EnableGsp {
        /// Client id
        #[arg(long)]
        client_id: String,
    },
    /// Give a GSP client a new secret and print it (shown once); the old secret is refused from now on
    RotateGspSecret {
        /// Client id
        #[arg(long)]
        client_id: String,
    },
    /// Choose how the GST System dialect writes `status_cd` for a GSP client's software
    SetGspStatusCd {
        /// Client id
        #[arg(long)]
        client_id: String,
        /// `number` (1/0), `string` ("1"/"0"), or `server` (follow gstn_numeric_status_cd)
        #[arg(long, value_enum)]
        status_cd: StatusCdChoice,
    },
}

/// How `status_cd` is written for one GSP client.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusCdChoice {
    /// 1 / 0
    Number,
    /// "1" / "0"
    String,
    /// The server's setting (`gstn_numeric_status_cd`)
    Server,
}

impl StatusCdChoice {
    fn numeric(self) -> Option<bool> {
        match self {
            Self::Number => Some(true),
            Self::String => Some(false),
            Self::Server => None,
        }
    }
}

/// Key management.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key active; the old one stays in the JWKS until its tokens have expired
    Rotate,
    /// Make a new GSTN-dialect RSA key (and certificate) active; the old one decrypts for 24 hours more
    RotateGstn,
}

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first broken link (exit code 1 when broken)
    Verify,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let base = match &cli.config {
        Some(path) => match Settings::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Settings::default(),
    };
    let settings = cli.args.apply(base);
    init_logging(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command with `settings`; returns the process exit code.
pub async fn execute(command: Command, settings: Settings) -> Result<ExitCode, String> {
    match command {
        Command::Serve => {
            let app = Application::build(settings, Clock::system())
                .await
                .map_err(|e| e.to_string())?;
            app.run_until_stopped().await.map_err(|e| e.to_string())?;
            tracing::info!("gsp-gateway stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi { json } => {
            let text = if json {
                use utoipa::OpenApi;
                crate::openapi::ApiDoc::openapi()
                    .to_pretty_json()
                    .map_err(|e| e.to_string())?
            } else {
                crate::openapi::yaml()?
            };
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let url = DatabaseUrl::parse(&settings.database_url).map_err(|e| e.to_string())?;
            let applied = tokio::task::spawn_blocking(move || migrate(&url))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            println!(
                "{applied} migration(s) applied to {}",
                redact(&settings.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(admin) => run_admin(admin, &settings).await,
        Command::Keys(KeysCommand::Rotate) => {
            let db = open(&settings).await?;
            let now = Clock::system().now();
            let keep = TimeDelta::seconds(
                settings
                    .access_token_ttl_secs
                    .max(settings.taxpayer_token_ttl_secs) as i64,
            ) + TimeDelta::minutes(5);
            let kid = db
                .run(move |conn| crate::tokens::rotate(conn, now, keep))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "new signing key {kid} is active; any previous key stays published for {} minutes",
                keep.num_minutes()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::RotateGstn) => {
            let db = open(&settings).await?;
            let now = Clock::system().now();
            let kid = db
                .run(move |conn| Ok(crate::gstn::rsa_key::rotate_gstn_key(conn, now)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            println!(
                "new GSTN key {kid} is active; the previous one decrypts for 24 hours, until clients re-download the certificate"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify) => {
            let db = open(&settings).await?;
            let report = db.run(audit::verify_chain).await.map_err(|e| e.to_string())?;
            match report.first_broken {
                None => {
                    println!("audit chain intact: {} event(s) verified", report.checked);
                    Ok(ExitCode::SUCCESS)
                }
                Some((id, reason)) => {
                    println!(
                        "audit chain BROKEN at event {id}: {reason} ({} event(s) verified before it)",
                        report.checked
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn open(settings: &Settings) -> Result<Db, String> {
    let url = DatabaseUrl::parse(&settings.database_url).map_err(|e| e.to_string())?;
    let migrate_url = url.clone();
    tokio::task::spawn_blocking(move || migrate(&migrate_url))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Db::new(
        &url,
        &PoolOptions {
            max_size: 2,
            checkout_timeout: settings.db_timeout(),
        },
    ))
}

fn cli_event() -> NewAuditEvent {
    NewAuditEvent {
        actor: "operator".into(),
        detail: serde_json::json!({"via": "cli"}),
        ..Default::default()
    }
}

/// Runs one provisioning service in the database and renders what it returns as JSON.
async fn provision<T: serde::Serialize + Send + 'static>(
    db: &Db,
    work: impl FnOnce(&mut gsp_gateway_storage::DbConn) -> Result<T, crate::error::ApiError> + Send + 'static,
) -> Result<String, String> {
    let done = db
        .run(move |conn| Ok(work(conn)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&done).map_err(|e| e.to_string())
}

async fn run_admin(command: AdminCommand, settings: &Settings) -> Result<ExitCode, String> {
    let db = open(settings).await?;
    let now = Clock::system().now();
    let output = match command {
        AdminCommand::CreateTaxpayer {
            gstin,
            username,
            password,
            legal_name,
            trade_name,
            email,
            mobile,
        } => {
            let input = NewTaxpayer {
                gstin,
                username,
                password,
                legal_name,
                trade_name,
                email,
                mobile,
            };
            let checked = provisioning::check_taxpayer(input).map_err(|e| e.to_string())?;
            let hash = PasswordHash::create(&checked.password()).map_err(|e| e.to_string())?;
            let lifetime = settings.password_lifetime_days;
            provision(&db, move |conn| {
                provisioning::create_taxpayer(conn, checked, &hash, now, lifetime, cli_event())
            })
            .await?
        }
        AdminCommand::CreateGsp { name } => {
            let input = NewGsp { name };
            provisioning::check_gsp(&input).map_err(|e| e.to_string())?;
            provision(&db, move |conn| {
                provisioning::create_gsp(conn, input, now, cli_event())
            })
            .await?
        }
        AdminCommand::DisableGsp { client_id } => {
            provision(&db, move |conn| {
                provisioning::disable_gsp(conn, &client_id, now, cli_event())
            })
            .await?
        }
        AdminCommand::EnableGsp { client_id } => {
            provision(&db, move |conn| {
                provisioning::enable_gsp(conn, &client_id, now, cli_event())
            })
            .await?
        }
        AdminCommand::RotateGspSecret { client_id } => {
            provision(&db, move |conn| {
                provisioning::rotate_gsp_secret(conn, &client_id, now, cli_event())
            })
            .await?
        }
        AdminCommand::SetGspStatusCd { client_id, status_cd } => {
            provision(&db, move |conn| {
                provisioning::set_gsp_status_cd(conn, &client_id, status_cd.numeric(), now, cli_event())
            })
            .await?
        }
    };
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}
