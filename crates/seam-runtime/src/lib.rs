//! seam's runtime: the Singer message loader shared by `seam target` and `seam sync`, the job runner
//! and the scheduler.

pub mod job;
pub mod loader;
pub mod pipeline;
pub mod scheduler;
