//! One module per subcommand.

pub mod schema_name;
