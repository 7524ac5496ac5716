//! The connection check: can seam reach the source with these settings, and what does it offer?

use super::{latest_catalog, JobContext};
use crate::error::JobError;
use seam_core::{Catalog, Classify, ErrorKind};
use seam_metastore::{CheckStatus, ConnectionCheck, Integration};
use tracing::{info, warn};

/// Runs a connection check and a discovery for an integration, updating the `running` check record
/// `check` as it goes. The discovered catalog (with any earlier selection carried over) is stored.
/// Success reads "Success!"; a failure carries the cause in words.
pub async fn run_check(
    ctx: &JobContext,
    integration: Integration,
    mut check: ConnectionCheck,
) -> ConnectionCheck {
    let outcome = async {
        let spec = ctx.spec(&integration).map_err(|e| (true, e))?;
        let source = ctx.factory.source(&spec).map_err(|e| (true, e))?;
        source.check().await.map_err(|e| (true, JobError::from(e)))?;
        check.check_exit_status = Some(0);
        let mut catalog = source.discover().await.map_err(|e| (false, JobError::from(e)))?;
        if let Some(previous) = latest_catalog(ctx, &integration).await {
            catalog.carry_selection_from(&previous);
        }
        ctx.metastore
            .set_catalog(integration.id, &catalog)
            .await
            .map_err(|e| (false, JobError::from(e)))?;
        Ok::<Catalog, (bool, JobError)>(catalog)
    }
    .await;
    check.completion_time = Some(ctx.clock.now());
    match outcome {
        Ok(catalog) => {
            check.status = CheckStatus::Succeeded;
            check.discovery_exit_status = Some(0);
            info!(
                source_id = integration.id,
                streams = catalog.streams.len(),
                "connection check succeeded"
            );
        }
        Err((in_check, e)) => {
            check.status = CheckStatus::Failed;
            let message = describe_check_error(&e);
            warn!(source_id = integration.id, error = %message, "connection check failed");
            if in_check {
                check.check_exit_status = Some(1);
                check.check_error_message = Some(message);
            } else {
                check.discovery_exit_status = Some(1);
                check.discovery_error_message = Some(message);
            }
        }
    }
    if let Err(e) = ctx.metastore.finish_check(&check).await {
        warn!(source_id = integration.id, error = %e, "could not store the connection check result");
    }
    check
}

/// The user-facing cause of a failed check. The source's message names the problem (unknown
/// subdomain, rejected token, not an admin); network-level failures get a prefix saying so.
pub fn describe_check_error(e: &JobError) -> String {
    match e.kind() {
        ErrorKind::Transient => format!("network: {e}"),
        ErrorKind::RateLimited { .. } => format!("rate limited by the source: {e}"),
        _ => e.to_string(),
    }
}
