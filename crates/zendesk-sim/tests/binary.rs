//! The `zendesk-sim` binary prints one parseable line and serves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_prints_its_url_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zendesk-sim"))
        .args([
            "--port",
            "0",
            "--tickets",
            "30",
            "--seed",
            "3",
            "--gate",
            "talk",
            "--oauth-token",
            "tok",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(
        line.starts_with("zendesk-sim listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.contains("subdomain acme")
            && line.contains("email admin@acme.test")
            && line.contains("token sim-token")
    );
    let url = line.split_whitespace().nth(3).unwrap().to_owned();
    let c = reqwest::Client::new();
    let me = c
        .get(format!("{url}/api/v2/users/me.json"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let talk = c
        .get(format!("{url}/api/v2/channels/voice/phone_numbers.json"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(talk.status(), 403);
    let truth: serde_json::Value = c
        .get(format!("{url}/__sim/truth?stream=tickets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth["count"], 30);
    child.kill().unwrap();
    let _ = child.wait();
}
