//! Nested keys that cannot name a column on their own never reject the record.

use crate::harness::{both, col, columns, rec, rows, schema};
use serde_json::json;

/// Zendesk Talk's phone numbers key greeting categories by id: `{"1": …, "2": …}`
/// (https://developer.zendesk.com/api-reference/voice/talk-api/phone_numbers/).
#[test]
fn talk_phone_numbers_greeting_categories_load_without_rejection() {
    both(|p| {
        let mut d = p.open();
        d.ensure_table(&schema(
            "talk_phone_numbers",
            &["id"],
            json!({"type": "object", "properties": {
                "id": {"type": "integer"},
                "categorised_greetings": {"type": ["null", "object"], "properties": {}, "additionalProperties": true},
                "categorised_greetings_with_sub_settings": {"type": ["null", "object"], "properties": {}, "additionalProperties": true}}}),
        ))
        .unwrap();
        let sub_settings = json!({
            "1": {"voicemail_on_outside_business_hours": "voicemail_en_voicemail_config",
                  "voicemail_on_inside_business_hours": "voicemail_en",
                  "voicemail_off_inside_business_hours": "voicemail_en_available",
                  "voicemail_off_outside_business_hours": "voicemail_en_voicemail_config"},
            "2": {"voicemail_on": "available_en_voicemail_config", "voicemail_off": "available_en_available"}
        });
        d.write_batch(
            "talk_phone_numbers",
            &[
                rec(
                    "talk_phone_numbers",
                    json!({"id": 1, "number": "+14155550100",
                           "categorised_greetings": {"1": "voicemail_en", "2": "available_en"},
                           "categorised_greetings_with_sub_settings": sub_settings}),
                ),
                rec(
                    "talk_phone_numbers",
                    json!({"id": 2, "number": "+14155550101",
                           "categorised_greetings": {"1": "voicemail_de", "2": "available_de"},
                           "labels": {"日本": "tokyo", "": "blank"}}),
                ),
            ],
        )
        .unwrap();
        let report = d.commit(None).unwrap();
        assert_eq!(report.rows.get("talk_phone_numbers"), Some(&2), "{:?}", p.kind);
        assert_eq!(report.rejected.get("talk_phone_numbers"), None, "{:?}", p.kind);
        assert!(
            col(d.as_mut(), "SELECT reason FROM §_sdc_rejected").is_empty(),
            "{:?}",
            p.kind
        );
        let cols = columns(d.as_mut(), "talk_phone_numbers");
        for c in [
            "categorised_greetings___1",
            "categorised_greetings___2",
            "categorised_greetings_with_sub_settings___2__voicemail_on",
            "categorised_greetings_with_sub_settings___1",
            "labels",
        ] {
            assert!(cols.contains(&c.to_owned()), "{c} in {cols:?} ({:?})", p.kind);
        }
        let got = rows(
            d.as_mut(),
            "SELECT id, categorised_greetings___1, categorised_greetings___2, \
                    categorised_greetings_with_sub_settings___2__voicemail_off, labels \
             FROM §talk_phone_numbers ORDER BY id",
        );
        assert_eq!(
            got,
            vec![
                vec![
                    Some("1".into()),
                    Some("voicemail_en".into()),
                    Some("available_en".into()),
                    Some("available_en_available".into()),
                    None
                ],
                vec![
                    Some("2".into()),
                    Some("voicemail_de".into()),
                    Some("available_de".into()),
                    None,
                    Some(r#"{"日本":"tokyo","":"blank"}"#.into())
                ],
            ],
            "{:?}",
            p.kind
        );
        // Category 1's settings name columns longer than the warehouse allows: they stay together
        // as JSON, readable whole.
        let kept = col(
            d.as_mut(),
            "SELECT categorised_greetings_with_sub_settings___1 FROM §talk_phone_numbers WHERE id = 1",
        );
        let kept: serde_json::Value = serde_json::from_str(kept[0].as_deref().unwrap()).unwrap();
        assert_eq!(
            kept,
            json!({"voicemail_on_outside_business_hours": "voicemail_en_voicemail_config",
                   "voicemail_on_inside_business_hours": "voicemail_en",
                   "voicemail_off_inside_business_hours": "voicemail_en_available",
                   "voicemail_off_outside_business_hours": "voicemail_en_voicemail_config"})
        );
    });
}
