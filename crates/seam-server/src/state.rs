//! What every handler shares.

use seam_core::ConnectorSpec;
use seam_metastore::{Metastore, SecretCipher};
use seam_runtime::clock::Clock;
use seam_runtime::scheduler::Scheduler;
use seam_runtime::telemetry::Telemetry;
use std::sync::Arc;

/// Shared state of the API; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub metastore: Arc<dyn Metastore>,
    /// Seals credentials.
    pub cipher: SecretCipher,
    /// Jobs and checks.
    pub scheduler: Scheduler,
    /// Counters for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The connectors integrations can use (the factory's registry), in the order they are listed.
    pub connectors: Arc<[ConnectorSpec]>,
    /// Limits and policies against outsiders.
    pub security: Arc<crate::service::SecurityConfig>,
    /// The dashboard's sign-in throttle: its budgets live in the metastore (shared by every process
    /// using it), its password-check slots are this process's.
    pub sign_in: crate::ui::throttle::SignInThrottle,
}
