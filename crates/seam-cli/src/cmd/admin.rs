//! `seam admin reset-password`: a new password for the dashboard's `admin` account, stored (argon2
//! hash only) in the metastore `seam serve` uses, which may be running: the next sign-in checks it.

use super::store::{runtime, StoreArgs};
use anyhow::Context as _;
use seam_server::ui::{session, ADMIN_USERNAME};
use std::io::BufRead as _;

/// Arguments of `seam admin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AdminCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Set a new dashboard password for user admin: generated and printed once, or read from stdin.
    ResetPassword {
        /// Read the new password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs `seam admin …`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let AdminCommand::ResetPassword { password_stdin } = args.command;
    let given = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    runtime()?.block_on(async move {
        let store = args.store.open_existing().await?;
        let password = given.clone().unwrap_or_else(session::generate_password);
        seam_server::ui::set_admin_password(store.as_ref(), &password).await?;
        if given.is_some() {
            println!("seam: the dashboard password of user {ADMIN_USERNAME} is set");
        } else {
            // Printed once, like on first start; only an argon2 hash is stored.
            println!("seam: dashboard sign-in (shown once): user {ADMIN_USERNAME}, password {password}");
        }
        Ok(())
    })
}
