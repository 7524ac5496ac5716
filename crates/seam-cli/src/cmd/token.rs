//! `seam token create|list|revoke`: API tokens, managed in the metastore `seam serve` uses (it may be
//! running). A new token is printed once, on stdout alone (`TOKEN=$(seam token create --name ci)`);
//! only its SHA-256 is stored.

use super::store::{runtime, StoreArgs};
use seam_server::auth;

/// Arguments of `seam token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (stdout); only its hash is stored.
    Create {
        /// A name to tell it by (letters, digits, '-', '_', '.'); unique among tokens not revoked.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List tokens: id, name, created, revoked (never the tokens: seam does not have them).
    List,
    /// Revoke a token by id or name: the API refuses it from the next request on.
    Revoke {
        /// The token's id or name (`seam token list`).
        id_or_name: String,
    },
}

/// Runs `seam token …`.
pub fn run(args: Args) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let store = args.store.open_existing().await?;
        let now = chrono::Utc::now();
        match args.command {
            TokenCommand::Create { name } => {
                let (created, token) = auth::create_token(store.as_ref(), &name, now).await?;
                eprintln!(
                    "seam: created API token {} ({}); it is shown once, store it now:",
                    created.id, created.name
                );
                println!("{token}");
            }
            TokenCommand::List => {
                println!("{:>4}  {:<24}  {:<24}  revoked", "id", "name", "created");
                for t in store.list_tokens().await? {
                    let revoked = t
                        .revoked_at
                        .map_or_else(|| "-".to_owned(), |r| r.format("%Y-%m-%d %H:%M:%SZ").to_string());
                    println!(
                        "{:>4}  {:<24}  {:<24}  {revoked}",
                        t.id,
                        t.name,
                        t.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string()
                    );
                }
            }
            TokenCommand::Revoke { id_or_name } => {
                let revoked = auth::revoke_token(store.as_ref(), &id_or_name, now).await?;
                println!(
                    "seam: revoked API token {} ({}): the API refuses it from now on",
                    revoked.id, revoked.name
                );
            }
        }
        Ok(())
    })
}
