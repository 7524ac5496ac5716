//! One module per subcommand.

pub mod schema_name;
pub mod tap;
pub mod sync;
pub mod target;
