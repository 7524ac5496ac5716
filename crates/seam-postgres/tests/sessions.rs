//! Every connection seam makes (the metastore's through the async driver, the warehouse's through
//! the blocking one) bounds its lock waits and its idle transactions, unless the URL says otherwise.

use seam_postgres::{ConnectOptions, IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT};

const SETTINGS: &str =
    "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')";

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

async fn settings(url: &str) -> (String, String) {
    let options = ConnectOptions::parse(url).unwrap();
    let client = options.connect().await.unwrap();
    let row = client.query_one(SETTINGS, &[]).await.unwrap();
    let async_side = (row.get(0), row.get(1));
    let blocking_side = tokio::task::spawn_blocking(move || {
        let mut client = options.connect_blocking().unwrap();
        let row = client.query_one(SETTINGS, &[]).unwrap();
        (row.get(0), row.get(1))
    })
    .await
    .unwrap();
    assert_eq!(async_side, blocking_side, "both drivers set the same");
    async_side
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_bound_lock_waits_and_idle_transactions_unless_the_url_sets_them() {
    let Some(url) = seam_test_support::postgres_url() else {
        return;
    };
    assert_eq!(
        settings(&url).await,
        (LOCK_TIMEOUT.to_owned(), IDLE_IN_TRANSACTION_TIMEOUT.to_owned())
    );
    let own = with_param(&url, "options=-c%20lock_timeout%3D5s");
    assert_eq!(
        settings(&own).await,
        ("5s".to_owned(), IDLE_IN_TRANSACTION_TIMEOUT.to_owned())
    );
    let own = with_param(&url, "options=-c%20idle_in_transaction_session_timeout%3D1h");
    assert_eq!(settings(&own).await, (LOCK_TIMEOUT.to_owned(), "1h".to_owned()));
}
