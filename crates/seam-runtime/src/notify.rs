//! Where notifications go.

use async_trait::async_trait;
use seam_metastore::{Metastore, NewNotification};
use std::fmt;
use std::sync::Arc;
use tracing::warn;

/// Setting key: URL that receives every notification as a JSON POST.
pub const SETTING_WEBHOOK_URL: &str = "notification_webhook_url";

/// Receives every notification the runtime raises (in-app store, webhook, ...). Must not fail the
/// caller: delivery problems are logged by the implementation.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Delivers one notification.
    async fn notify(&self, notification: NewNotification);
}

/// Stores notifications in the metastore only (no webhook).
#[derive(Debug, Clone)]
pub struct InAppNotifier {
    /// The store.
    pub metastore: Arc<dyn Metastore>,
}

#[async_trait]
impl Notifier for InAppNotifier {
    async fn notify(&self, notification: NewNotification) {
        if let Err(e) = self.metastore.add_notification(notification).await {
            warn!(error = %e, "could not store a notification");
        }
    }
}
