//! Builds the application: migrations, pool, keys, listener, routes. Binds port 0 in tests.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use gsp_gateway_storage::{DatabaseUrl, Db, PoolOptions, StorageError, migrate};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::clock::Clock;
use crate::json::{BodyLimit, path_error, query_error, route_not_found};
use crate::metrics;
use crate::openapi::ApiDoc;
use crate::request_id;
use crate::routes::{admin, docs, gsp, health, page, resource, taxpayer};
use crate::settings::Settings;
use crate::state::AppState;
use crate::tokens::{KeyRing, ensure_active_key};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings are inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be prepared.
    #[error("database: {0}")]
    Database(#[from] StorageError),
    /// The listener could not be bound.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A built, bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Migrates the database, loads keys and binds `settings.bind` (port 0 picks a free port).
    pub async fn build(settings: Settings, clock: Clock) -> Result<Self, StartupError> {
        settings.validate().map_err(StartupError::Config)?;
        metrics::install().map_err(|e| StartupError::Config(e.to_string()))?;
        let url = DatabaseUrl::parse(&settings.database_url)?;
        let migrate_url = url.clone();
        tokio::task::spawn_blocking(move || migrate(&migrate_url))
            .await
            .map_err(|e| StartupError::Config(e.to_string()))??;
        let db = Db::new(
            &url,
            &PoolOptions {
                max_size: settings.db_pool_size,
                checkout_timeout: settings.db_timeout(),
            },
        );
        let keys = KeyRing::new(settings.issuer.clone());
        let now = clock.now();
        keys.replace(&db.run(move |conn| ensure_active_key(conn, now)).await?);
        let gstn = crate::gstn::GstnKeys::new();
        crate::gstn::load(&db, &gstn, now).await?;

        let listener = TcpListener::bind(&settings.bind)?;
        let port = listener.local_addr()?.port();
        let workers = settings.workers;
        let settings_connect_timeout = settings.upstream_connect_timeout_ms;
        let settings_heavy_work_queue = settings.heavy_work_queue;
        let trusted_proxies =
            crate::auth::TrustedProxies::parse(&settings.trusted_proxies).map_err(StartupError::Config)?;
        let limits = crate::gateway::Limits::new(&settings);
        let upstream_tls = crate::gateway::forward::tls_config(&settings).map_err(StartupError::Config)?;
        let state = web::Data::new(AppState {
            settings: std::sync::Arc::new(settings),
            db,
            clock,
            keys: std::sync::Arc::new(keys),
            view: std::sync::Arc::new(crate::gateway::GatewayView::new()),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_millis(settings_connect_timeout))
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(|e| StartupError::Config(e.to_string()))?,
            claims: std::sync::Arc::new(crate::gateway::ClaimsCache::new(200_000)),
            limits: std::sync::Arc::new(limits),
            gstn: std::sync::Arc::new(gstn),
            heavy: std::sync::Arc::new(crate::state::HeavyWork::per_core(settings_heavy_work_queue)?),
            trusted_proxies: std::sync::Arc::new(trusted_proxies),
        });
        tracing::info!(port, backend = state.db.backend(), "gsp-gateway listening");

        tokio::spawn(crate::gateway::feed::follow_changes(state.clone().into_inner()));
        tokio::spawn(crate::gateway::feed::housekeeping(state.clone().into_inner()));
        tokio::spawn(crate::gstn::keep_fresh(state.clone().into_inner()));
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            // One upstream client per worker (its connections live on the worker's runtime), shared by
            // the gateway's front and the application's dialect face.
            let upstream = web::Data::new(crate::gateway::forward::UpstreamClient::new(
                &app_state.settings,
                upstream_tls.clone(),
            ));
            let app = App::new()
                .app_data(app_state.clone())
                .app_data(BodyLimit(app_state.settings.max_body_bytes))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .app_data(upstream.clone())
                .configure(routes)
                .default_service(web::to(route_not_found))
                .wrap(from_fn(request_id::assign));
            // Every call under /v1/gst/ and /taxpayerapi/ goes from the front straight to its face.
            crate::gateway::Front::new(app, app_state.clone(), upstream)
        })
        // Each connection remembers its last verified session token (gateway::ConnectionToken).
        .on_connect(|_, data| {
            data.insert(crate::gateway::ConnectionToken::default());
        })
        .listen(listener)?
        .shutdown_timeout(30);
        if let Some(n) = workers {
            server = server.workers(n.max(1));
        }
        Ok(Self {
            port,
            server: server.run(),
            state,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests reach the database and keys through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT (graceful: in-flight requests finish) or the server is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Every route of the contract.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(page::configure)
        .configure(crate::routes::gstn_cert::configure)
        .configure(crate::gstn::configure)
        .service(resource("/health/live").route(web::get().to(health::live)))
        .service(resource("/health/ready").route(web::get().to(health::ready)))
        .service(resource("/metrics").route(web::get().to(metrics::render)))
        .service(resource("/.well-known/jwks.json").route(web::get().to(docs::jwks)))
        .service(resource("/docs").route(web::get().to(docs::docs_redirect)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
        .service(resource("/v1/admin/taxpayers").route(web::post().to(admin::create_taxpayer)))
        .service(resource("/v1/admin/gsps").route(web::post().to(admin::create_gsp)))
        .service(resource("/v1/admin/audit").route(web::get().to(admin::list_audit)))
        .service(resource("/v1/taxpayer/login").route(web::post().to(taxpayer::login)))
        .service(resource("/v1/taxpayer/password").route(web::post().to(taxpayer::change_password)))
        .service(
            resource("/v1/taxpayer/api-access")
                .route(web::get().to(taxpayer::get_api_access))
                .route(web::put().to(taxpayer::set_api_access)),
        )
        .service(resource("/v1/taxpayer/otp-requests").route(web::get().to(taxpayer::otp_requests)))
        .service(resource("/v1/taxpayer/sessions").route(web::get().to(taxpayer::list_sessions)))
        .service(
            resource("/v1/taxpayer/sessions/{session_id}").route(web::delete().to(taxpayer::revoke_session)),
        )
        .service(resource("/v1/taxpayer/activity").route(web::get().to(taxpayer::activity)))
        .service(resource("/v1/gsp/otp").route(web::post().to(gsp::request_otp)))
        .service(resource("/v1/gsp/token").route(web::post().to(gsp::issue_token)))
        .service(resource("/v1/gsp/logout").route(web::post().to(gsp::logout)))
        .service(resource("/v1/gsp/search/{gstin}").route(web::get().to(gsp::search)));
}
