//! seam's runtime: the loader (batching, commits, retries), the pipeline (the one driver into a
//! destination of `seam sync`, `seam target` and the service's jobs) and what feeds it (a source, or
//! a tap's lines), the job runner and the scheduler, and what they share: the clock, the connector
//! factory, notifications, telemetry and row usage.

pub mod clock;
pub mod connector;
pub mod error;
pub mod feed;
pub mod job;
pub mod loader;
pub mod notify;
pub mod pipeline;
pub mod progress;
pub mod scheduler;
pub mod telemetry;
pub mod usage;
