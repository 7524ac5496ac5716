//! Boots the service: data directory, metastore, secret key, API token, scheduler, HTTP listener.

use crate::auth::bootstrap_token;
use crate::notify::WebhookNotifier;
use crate::state::AppState;
use seam_metastore::crypto::CryptoError;
use seam_metastore::{Metastore, MetastoreError, SecretCipher, SqliteMetastore};
use seam_runtime::job::{ConnectorFactory, JobContext, Notifier, Telemetry};
use seam_runtime::scheduler::{Clock, Scheduler, SchedulerConfig, SchedulerError};
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

/// A running service.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    initial_token: Option<String>,
    initial_admin_password: Option<String>,
    state: AppState,
    stop_http: CancellationToken,
    server: JoinHandle<()>,
}

impl Service {
    /// Starts everything; returns once the listener is bound.
    pub async fn start(config: ServiceConfig) -> Result<Service, ServiceError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ServiceError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let metastore: Arc<dyn Metastore> = match config.metastore {
            Some(m) => m,
            None => {
                let path = dir.join(METASTORE_FILE);
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
        let initial_token = bootstrap_token(metastore.as_ref(), config.clock.now()).await?;
        // The dashboard's `admin` account: SEAM_ADMIN_PASSWORD, or a password generated on first start.
        let admin_env = std::env::var(crate::ui::ADMIN_PASSWORD_ENV).ok();
        let initial_admin_password =
            crate::ui::bootstrap_admin(metastore.as_ref(), admin_env.as_deref()).await?;
        let telemetry = Arc::new(Telemetry::default());
        let notifier: Arc<dyn Notifier> = Arc::new(WebhookNotifier::new(Arc::clone(&metastore)));
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
        };
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
        let app = crate::app(state.clone());
        let stop_http = CancellationToken::new();
        let stop = stop_http.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "http server failed");
            }
        });
        info!(%addr, "seam is listening");
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
        self.initial_token.as_deref()
    }

    /// The dashboard password of user `admin` generated on this first start (print it once); `None`
    /// on later starts or when `SEAM_ADMIN_PASSWORD` set it.
    pub fn initial_admin_password(&self) -> Option<&str> {
        self.initial_admin_password.as_deref()
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
        let mut server = self.server;
        if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
            warn!("http requests still in flight at the shutdown deadline; closing them");
            server.abort();
            clean = false;
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
