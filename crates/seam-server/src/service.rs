//! Boots the service: HTTP listener, data directory, metastore, secret key, API token, scheduler.
//!
//! The listener binds first: a start that cannot listen (the port is taken) fails before anything is
//! created, so the API token and admin password generated on the first start that succeeds are the
//! ones printed.

use crate::auth::bootstrap_token;
use crate::notify::{WebhookNotifier, WebhookPolicy};
use crate::state::AppState;
use crate::ui::throttle::SignInLimits;
use seam_core::ConnectorSpec;
use seam_core::Secret;
use seam_metastore::crypto::CryptoError;
use seam_metastore::{Metastore, MetastoreError, SecretCipher, SqliteMetastore};
use seam_runtime::clock::Clock;
use seam_runtime::connector::ConnectorFactory;
use seam_runtime::job::JobContext;
use seam_runtime::notify::Notifier;
use seam_runtime::scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use seam_runtime::telemetry::Telemetry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The metastore's file under the data directory.
pub const METASTORE_FILE: &str = "metastore.sqlite";

/// How long [`Service::shutdown`] waits for jobs and requests to end before it gives up on them.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the metastore, the key file and (by default) the DuckDB warehouse live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Builds sources and destinations for jobs and checks.
    pub factory: Arc<dyn ConnectorFactory>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// A metastore to use instead of `<data_dir>/metastore.sqlite`.
    pub metastore: Option<Arc<dyn Metastore>>,
    /// Limits and policies against outsiders (sign-in throttling, webhook targets).
    pub security: SecurityConfig,
}

/// What keeps outsiders from wearing the service down or using it as a stepping stone.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// Dashboard sign-in throttling.
    pub sign_in: SignInLimits,
    /// Where notification webhooks may go.
    pub webhooks: WebhookPolicy,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none by default: the header is
    /// ignored), for the sign-in throttle's per-client budget.
    pub trusted_proxies: crate::ui::proxy::TrustedProxies,
}

/// The service failed to start.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metastore failed.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// The secret key could not be loaded or created.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The scheduler failed to start.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The dashboard's admin account could not be set up.
    #[error(transparent)]
    Admin(#[from] crate::ui::session::AdminError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running service. `Debug` never shows the initial token or password.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    initial_token: Option<Secret>,
    initial_admin_password: Option<Secret>,
    state: AppState,
    stop_http: CancellationToken,
    /// The HTTP server (`None` without the API role).
    server: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts everything; returns once the listener is bound. The listener binds before anything is
    /// created or changed on disk.
    pub async fn start(config: ServiceConfig) -> Result<Service, ServiceError> {
        Self::start_with(config, true).await
    }

    /// Starts the service without its API role: no HTTP listener, no API token or admin account
    /// created; the scheduler and workers as `config.scheduler` says (a worker-only process of a
    /// cluster, see [`seam_runtime::scheduler::Dispatch::Queue`]).
    pub async fn start_without_api(config: ServiceConfig) -> Result<Service, ServiceError> {
        Self::start_with(config, false).await
    }

    async fn start_with(config: ServiceConfig, api: bool) -> Result<Service, ServiceError> {
        let (listener, addr) = if api {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServiceError::Bind {
                    addr: config.listen,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| ServiceError::Bind {
                addr: config.listen,
                source,
            })?;
            (Some(listener), addr)
        } else {
            (None, config.listen)
        };
        let dir = config.data_dir.clone();
        let data_dir_error = |source| ServiceError::DataDir {
            path: config.data_dir.clone(),
            source,
        };
        for path in crate::datadir::prepare(&dir).map_err(data_dir_error)? {
            warn!(path = %path.display(), "the file was readable by other users: tightened to mode 0600");
        }
        let metastore: Arc<dyn Metastore> = match config.metastore {
            Some(m) => m,
            None => {
                let path = dir.join(METASTORE_FILE);
                crate::datadir::create_private_file(&path).map_err(data_dir_error)?;
                let opened = tokio::task::spawn_blocking(move || SqliteMetastore::open(&path))
                    .await
                    .map_err(MetastoreError::from)??;
                Arc::new(opened)
            }
        };
        let key_dir = dir.clone();
        let (cipher, created) = tokio::task::spawn_blocking(move || SecretCipher::load_or_create(&key_dir))
            .await
            .map_err(MetastoreError::from)??;
        if created {
            info!(path = %dir.join(seam_metastore::crypto::KEY_FILE).display(), "created the secret key file (mode 0600)");
        }
        // Before anything opens a blob: credentials sealed before they were bound to their integration.
        let report = seam_metastore::reseal_legacy_credentials(metastore.as_ref(), &cipher).await?;
        if !report.resealed.is_empty() {
            info!(integrations = ?report.resealed, "re-sealed stored credentials bound to their integration");
        }
        if !report.unreadable.is_empty() {
            warn!(integrations = ?report.unreadable, "stored credentials do not open with this secret key: \
                check SEAM_SECRET_KEY or the key file, or enter the credentials again");
        }
        let (mut initial_token, mut initial_admin_password) = (None, None);
        if api {
            initial_token = bootstrap_token(metastore.as_ref(), config.clock.now())
                .await?
                .map(Secret::new);
            // The dashboard's `admin` account: SEAM_ADMIN_PASSWORD, or a password generated on first start.
            let admin_env = std::env::var(crate::ui::ADMIN_PASSWORD_ENV).ok();
            initial_admin_password = crate::ui::bootstrap_admin(metastore.as_ref(), admin_env.as_deref())
                .await?
                .map(Secret::new);
        }
        let telemetry = Arc::new(Telemetry::default());
        let notifier: Arc<dyn Notifier> = Arc::new(WebhookNotifier::new(
            Arc::clone(&metastore),
            config.security.webhooks.clone(),
        ));
        let connectors: Arc<[ConnectorSpec]> = config.factory.connectors().into();
        let ctx = JobContext {
            metastore: Arc::clone(&metastore),
            cipher: cipher.clone(),
            factory: config.factory,
            notifier,
            telemetry: Arc::clone(&telemetry),
            clock: Arc::clone(&config.clock),
        };
        let scheduler = Scheduler::start(ctx, config.scheduler).await?;
        let state = AppState {
            metastore,
            cipher,
            scheduler,
            telemetry,
            clock: config.clock,
            connectors,
            sign_in: crate::ui::throttle::SignInThrottle::new(config.security.sign_in.clone()),
            security: Arc::new(config.security),
        };
        let stop_http = CancellationToken::new();
        let server = listener.map(|listener| {
            let app = crate::app(state.clone());
            let stop = stop_http.clone();
            info!(%addr, "seam is listening");
            tokio::spawn(async move {
                // The peer address feeds the sign-in throttle (per client).
                let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "http server failed");
                }
            })
        });
        Ok(Service {
            addr,
            initial_token,
            initial_admin_password,
            state,
            stop_http,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API token created on this first start (print it once), `None` on later starts.
    pub fn initial_token(&self) -> Option<&str> {
        self.initial_token.as_ref().map(Secret::expose)
    }

    /// The dashboard password of user `admin` generated on this first start (print it once); `None`
    /// on later starts or when `SEAM_ADMIN_PASSWORD` set it.
    pub fn initial_admin_password(&self) -> Option<&str> {
        self.initial_admin_password.as_ref().map(Secret::expose)
    }

    /// The shared state (tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Graceful stop within [`DEFAULT_SHUTDOWN_TIMEOUT`]; see [`Service::shutdown_within`].
    pub async fn shutdown(self) -> bool {
        self.shutdown_within(DEFAULT_SHUTDOWN_TIMEOUT).await
    }

    /// Graceful stop, bounded: running jobs stop at a safe point with their committed work kept (each
    /// within its stop grace), then the HTTP server finishes in-flight requests. Whatever has not ended
    /// when `timeout` is up is left behind (a job still `running` is marked failed at the next start
    /// and resumes from its last committed bookmark); returns false then.
    pub async fn shutdown_within(self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        // The API keeps answering while jobs stop (the dashboard shows "stopping").
        let mut clean = self.state.scheduler.shutdown_within(timeout).await;
        self.stop_http.cancel();
        if let Some(mut server) = self.server {
            if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
                warn!("http requests still in flight at the shutdown deadline; closing them");
                server.abort();
                clean = false;
            }
        }
        if clean {
            info!("seam stopped");
        } else {
            warn!(
                timeout_s = timeout.as_secs_f64(),
                "seam stopped without waiting for everything: the shutdown timeout was reached"
            );
        }
        clean
    }
}
