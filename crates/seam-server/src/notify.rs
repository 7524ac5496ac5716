//! Notifications: stored in-app, and POSTed as JSON to the configured webhook.

use crate::api::notifications::notification_json;
use async_trait::async_trait;
use seam_metastore::{Metastore, NewNotification};
use seam_runtime::job::{Notifier, SETTING_WEBHOOK_URL};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long a webhook delivery may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores every notification, then delivers it to `notification_webhook_url` when one is set.
/// Delivery runs in the background with a timeout; failures are logged, never fatal.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    metastore: Arc<dyn Metastore>,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A notifier over `metastore`.
    pub fn new(metastore: Arc<dyn Metastore>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .connect_timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        WebhookNotifier { metastore, client }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notification: NewNotification) {
        let stored = match self.metastore.add_notification(notification).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "could not store a notification");
                return;
            }
        };
        info!(code = %stored.code, level = stored.level.as_str(), subject = %stored.subject, "notification");
        let url = match self.metastore.get_setting(SETTING_WEBHOOK_URL).await {
            Ok(Some(u)) if !u.is_empty() => u,
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "could not read the webhook setting");
                return;
            }
        };
        let body = notification_json(&stored);
        let client = self.client.clone();
        tokio::spawn(async move {
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => warn!(
                    status = r.status().as_u16(),
                    "notification webhook answered with an error"
                ),
                Err(e) => warn!(error = %e, "notification webhook could not be reached"),
            }
        });
    }
}
