//! One module per subcommand.

pub mod demo;
pub mod schema_name;
pub mod serve;
pub mod sync;
pub mod tap;
pub mod target;
