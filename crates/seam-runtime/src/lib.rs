//! seam's runtime: the loader (batching, commits, retries: `seam target` runs it over stdin), the
//! pipeline (the one source → destination driver of `seam sync` and of the service's jobs), the job
//! runner and the scheduler, and what they share: the clock, the connector factory, notifications,
//! telemetry and row usage.

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
