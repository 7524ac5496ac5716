//! Walks the ticket cursor export of a running simulator and prints records/s.
//!
//! `cargo run --release -p zendesk-sim --example export_bench -- URL [rounds] [include]`
//! (see `scripts/sim_bench.sh`, which starts the simulator pinned to one core).
//! The client only scans the tail of each page for `after_url` and counts records, so the figure
//! measures the server.

use std::time::Instant;

fn after_url(body: &str) -> Option<String> {
    let tail_start = body.len().saturating_sub(2048);
    let mut start = tail_start;
    while !body.is_char_boundary(start) {
        start -= 1;
    }
    let tail = &body[start..];
    let i = tail.find("\"after_url\":\"")? + "\"after_url\":\"".len();
    let j = tail[i..].find('"')?;
    Some(tail[i..i + j].to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .ok_or("usage: export_bench BASE_URL [rounds] [include]")?;
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let include = args.next();
    let client = reqwest::Client::new();
    let mut best = 0.0f64;
    let mut total = 0usize;
    for round in 0..rounds {
        let mut url = format!("{base}/api/v2/incremental/tickets/cursor.json?start_time=1");
        if let Some(inc) = &include {
            url.push_str(&format!("&include={inc}"));
        }
        let started = Instant::now();
        let (mut records, mut bytes, mut pages) = (0usize, 0usize, 0usize);
        loop {
            let body = client
                .get(&url)
                .basic_auth("admin@acme.test/token", Some("sim-token"))
                .send()
                .await?
                .text()
                .await?;
            pages += 1;
            bytes += body.len();
            records += body.matches("\"generated_timestamp\":").count();
            let end = body.ends_with("\"end_of_stream\":true}");
            if end {
                break;
            }
            url = after_url(&body).ok_or("no after_url in page")?;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = records as f64 / secs;
        best = best.max(rate);
        total += records;
        println!(
            "round {round}: {records} records in {pages} pages, {:.1} MB, {secs:.3}s -> {rate:.0} records/s, {:.0} MB/s",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        );
    }
    println!("best: {best:.0} records/s (wall clock)");
    println!("total_records {total}");
    Ok(())
}
