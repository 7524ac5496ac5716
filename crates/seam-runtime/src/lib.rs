//! seam's runtime: the loader (batching, commits, retries: `seam target` runs it over stdin), the
//! pipeline (the one source → destination driver of `seam sync` and of the service's jobs), the job
//! runner and the scheduler.

pub mod job;
pub mod loader;
pub mod pipeline;
pub mod scheduler;
