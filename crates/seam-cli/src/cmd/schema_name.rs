//! `seam schema-name NAME`: the integration-name rule, for scripts and the curious.

/// Arguments of `seam schema-name`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The integration's display name, e.g. "Stitch Zendesk".
    name: String,
}

/// Prints the schema name, or the reason there is none.
pub fn run(args: Args) -> anyhow::Result<()> {
    let name = seam_core::naming::schema_name(&args.name)?;
    println!("{name}");
    Ok(())
}
