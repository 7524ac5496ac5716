//! A bare Singer tap over [`ZendeskSource`] for benchmarks, with the same output path as
//! `seam tap zendesk` (bounded channel → a writer thread → buffered stdout, flushed at STATE):
//! `cargo run --release --example singer_tap -- CONFIG.json [CATALOG.json]`.
//! Use `seam tap zendesk` for real work; this exists so the tap can be measured without building
//! the whole `seam` binary.

use seam_core::singer::Message;
use seam_core::{Catalog, Source, State};
use seam_zendesk::ZendeskSource;
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config = std::fs::read_to_string(
        args.next()
            .ok_or("usage: singer_tap CONFIG.json [CATALOG.json]")?,
    )?;
    let catalog: Option<Catalog> = match args.next() {
        Some(p) => Some(serde_json::from_str(&std::fs::read_to_string(p)?)?),
        None => None,
    };
    let source = ZendeskSource::from_json(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let catalog = match catalog {
            Some(c) => c,
            None => {
                let mut c = source.discover().await?;
                c.select_all();
                c
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(1024);
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            while let Some(msg) = rx.blocking_recv() {
                msg.write_line(&mut out)?;
                if matches!(msg, Message::State { .. }) {
                    out.flush()?;
                }
            }
            out.flush()
        });
        let result = source
            .read(
                &catalog,
                State::default(),
                tx,
                tokio_util::sync::CancellationToken::new(),
            )
            .await;
        writer.join().map_err(|_| "the writer panicked")??;
        result?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
