//! The warehouse against zendesk-sim's ground truth (`/__sim/truth`: per stream, `count`, sorted
//! `ids`, and `updated`, each record's latest version).

use super::sim::{API_TOKEN, EMAIL};
use super::warehouse::Warehouse;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use zendesk_sim::SimHandle;

/// Streams whose every run replaces the table (ACTIVATE_VERSION): rows deleted at the source vanish.
pub const FULL_TABLE: &[&str] = &["tags", "sla_policies", "talk_phone_numbers"];

/// The primary key column of each stream in the warehouse, and how the simulator names its ids.
pub fn key_of(stream: &str) -> &'static str {
    if stream == "tags" {
        "name"
    } else {
        "id"
    }
}

/// A JSON value as the warehouse reads back as text: a string as it is, anything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The ids of `stream` in the truth, as text.
pub fn ids(truth: &Value, stream: &str) -> BTreeSet<String> {
    truth[stream]["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("the truth has no ids for {stream}"))
        .iter()
        .map(text)
        .collect()
}

/// For every stream of the truth: see [`assert_streams_match_truth`].
pub fn assert_matches_truth(wh: &Warehouse, truth: &Value, earlier: Option<&Value>) {
    let streams = truth.as_object().unwrap();
    assert!(streams.len() >= 16, "the truth lists {} streams", streams.len());
    let names: Vec<&str> = streams.keys().map(String::as_str).collect();
    assert_streams_match_truth(wh, truth, earlier, &names);
}

/// For each of `streams`: no duplicate row, every id of the truth present, and nothing else —
/// except, for incremental streams, rows of records deleted at the source since `earlier` (Stitch
/// never deletes rows; deleted tickets themselves come back with `status: "deleted"`).
pub fn assert_streams_match_truth(wh: &Warehouse, truth: &Value, earlier: Option<&Value>, streams: &[&str]) {
    let mut mismatches = BTreeMap::new();
    for &stream in streams {
        let t = &truth[stream];
        assert_eq!(
            t["count"].as_u64().unwrap() as usize,
            t["ids"].as_array().unwrap().len(),
            "{stream}: the truth's count"
        );
        let want = ids(truth, stream);
        let may_linger: BTreeSet<String> = match earlier {
            Some(e) if !FULL_TABLE.contains(&stream) => ids(e, stream).difference(&want).cloned().collect(),
            _ => BTreeSet::new(),
        };
        let key = key_of(stream);
        let sql = format!(
            "SELECT CAST(\"{key}\" AS TEXT), '' FROM \"{}\".\"{stream}\"",
            wh.schema()
        );
        let Some(rows) = wh.pairs(&sql) else {
            if !want.is_empty() {
                mismatches.insert(stream, "table missing".to_owned());
            }
            continue;
        };
        let got: Vec<String> = rows.into_iter().map(|(k, _)| k).collect();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        if unique.len() != got.len() {
            mismatches.insert(stream, format!("{} duplicated rows", got.len() - unique.len()));
            continue;
        }
        let missing: Vec<&String> = want.difference(&unique).collect();
        let extra: Vec<&String> = unique
            .difference(&want)
            .filter(|id| !may_linger.contains(*id))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            mismatches.insert(
                stream,
                format!(
                    "{} missing, {} unexpected (e.g. {:?} / {:?})",
                    missing.len(),
                    extra.len(),
                    missing.first(),
                    extra.first()
                ),
            );
        }
    }
    assert!(
        mismatches.is_empty(),
        "warehouse differs from the truth: {mismatches:?}"
    );
}

/// The newest version of every ticket and user is in the warehouse (not an older one).
pub fn assert_latest_versions(wh: &Warehouse, truth: &Value) {
    let schema = wh.schema();
    for (stream, version) in [
        ("tickets", "CAST(generated_timestamp AS TEXT)".to_owned()),
        ("users", wh.iso_seconds("updated_at")),
    ] {
        let sql = format!("SELECT CAST(id AS TEXT), {version} FROM \"{schema}\".\"{stream}\"");
        let rows: BTreeMap<String, String> = wh
            .pairs(&sql)
            .unwrap_or_else(|| panic!("{sql} failed"))
            .into_iter()
            .collect();
        for (id, want) in truth[stream]["updated"].as_object().unwrap() {
            assert_eq!(rows.get(id), Some(&text(want)), "{stream} {id}: an older version");
        }
    }
}

/// The tags table holds exactly the simulator's tags, with their counts.
pub fn assert_tags_match_truth(wh: &Warehouse, sim: &SimHandle) {
    let truth = sim.truth_of("tags").unwrap();
    let want: BTreeMap<String, f64> = truth["updated"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    let rows = wh.query(&format!(
        "SELECT CAST(name AS TEXT), CAST(\"count\" AS TEXT) FROM \"{}\".tags",
        wh.schema()
    ));
    assert_eq!(rows.len(), want.len(), "tags rows: {rows:?}");
    let got: BTreeMap<String, f64> = rows
        .into_iter()
        .map(|r| {
            let count = r[1].as_deref().unwrap().parse::<f64>().unwrap();
            (r[0].clone().unwrap(), count)
        })
        .collect();
    assert_eq!(got, want, "tags differ from the simulator's truth");
}

/// The phone numbers the simulator serves (`GET /api/v2/channels/voice/phone_numbers.json`).
async fn served_phone_numbers(sim: &SimHandle) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v2/channels/voice/phone_numbers.json",
            sim.base_url()
        ))
        .basic_auth(format!("{EMAIL}/token"), Some(API_TOKEN))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["next_page"],
        Value::Null,
        "more than one page of phone numbers"
    );
    page["phone_numbers"].as_array().unwrap().clone()
}

/// The talk_phone_numbers table equals the simulator's: one row per phone number of the truth,
/// each with the truth's `created_at`, and each greeting category of `categorised_greetings`
/// (keys made of digits: `"1"` → `categorised_greetings___1`) holding the greeting it names.
pub async fn assert_phone_numbers_match_truth(wh: &Warehouse, sim: &SimHandle) {
    const STREAM: &str = "talk_phone_numbers";
    let truth = sim.truth();
    let served = served_phone_numbers(sim).await;
    assert_eq!(
        served.iter().map(|n| text(&n["id"])).collect::<BTreeSet<_>>(),
        ids(&truth, STREAM),
        "the simulator serves the phone numbers of its truth"
    );
    let schema = wh.schema();
    for number in &served {
        let id = text(&number["id"]);
        let greetings = number["categorised_greetings"].as_object().unwrap();
        assert!(!greetings.is_empty(), "phone number {id} has no greetings");
        let mut columns = vec![wh.iso_seconds("created_at")];
        columns.extend(
            greetings
                .keys()
                .map(|k| format!("CAST(\"categorised_greetings___{k}\" AS TEXT)")),
        );
        let rows = wh.query(&format!(
            "SELECT {} FROM \"{schema}\".\"{STREAM}\" WHERE CAST(id AS TEXT) = '{id}'",
            columns.join(", ")
        ));
        let [row] = &rows[..] else {
            panic!("phone number {id}: {} rows", rows.len());
        };
        let mut want = vec![Some(text(&truth[STREAM]["updated"][&id]))];
        want.extend(greetings.values().map(|g| Some(text(g))));
        assert_eq!(
            row, &want,
            "phone number {id}: created_at, then each categorised greeting"
        );
    }
    let rows = wh.query(&format!(
        "SELECT CAST(count(*) AS TEXT) FROM \"{schema}\".\"{STREAM}\""
    ));
    assert_eq!(rows[0][0], Some(served.len().to_string()), "{STREAM} rows");
}

/// `_sdc_rejected` holds no row (or does not exist).
pub fn assert_nothing_rejected(wh: &Warehouse) {
    if !wh.table_exists("_sdc_rejected") {
        return;
    }
    let rejected = wh.query(&format!(
        "SELECT CAST(table_name AS TEXT), CAST(reason AS TEXT) FROM \"{}\"._sdc_rejected",
        wh.schema()
    ));
    assert!(rejected.is_empty(), "rejected records: {rejected:?}");
}
