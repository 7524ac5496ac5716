//! Where seam keeps its state: the `--data-dir` / `--metastore-url` settings `seam serve` runs with,
//! shared by the commands that manage that state (`seam token`, `seam admin`).

use anyhow::Context as _;
use seam_metastore::{Metastore, PostgresMetastore, SqliteMetastore};
use std::path::PathBuf;
use std::sync::Arc;

/// The PostgreSQL schema of a `--metastore-url` metastore.
pub const POSTGRES_SCHEMA: &str = "seam";

/// `--data-dir` and `--metastore-url`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where the metastore, the secret key file and the default DuckDB warehouse live (created on first
    /// start, mode 0700).
    #[arg(long, env = "SEAM_DATA_DIR", default_value = "./seam-data", global = true)]
    pub data_dir: PathBuf,
    /// Keep the metastore in PostgreSQL (`postgres://…`, schema `seam`) instead of SQLite under the data dir.
    #[arg(long, env = "SEAM_METASTORE_URL", global = true)]
    pub metastore_url: Option<String>,
}

impl StoreArgs {
    /// Opens the metastore `seam serve` created; a data directory without one is an error (a typo in
    /// `--data-dir` must not manage an empty store nobody uses).
    pub async fn open_existing(&self) -> anyhow::Result<Arc<dyn Metastore>> {
        if let Some(url) = &self.metastore_url {
            let store = PostgresMetastore::connect(url, POSTGRES_SCHEMA)
                .await
                .context("cannot open the PostgreSQL metastore (--metastore-url)")?;
            return Ok(Arc::new(store));
        }
        let path = self.data_dir.join(seam_server::service::METASTORE_FILE);
        if !path.is_file() {
            anyhow::bail!(
                "no seam metastore at {}: pass the --data-dir (or SEAM_DATA_DIR) that `seam serve` uses, or \
                 --metastore-url for a PostgreSQL metastore",
                path.display()
            );
        }
        let store = tokio::task::spawn_blocking(move || SqliteMetastore::open(&path))
            .await
            .context("cannot open the metastore")?
            .context("cannot open the SQLite metastore")?;
        Ok(Arc::new(store))
    }
}

/// A runtime for the short management commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
