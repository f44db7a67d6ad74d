#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const FP: &str = "5F1AE5FB1BA18E5C3C4EA2E5B7BD30D8A1C9E43C5A7C1E40C1A3B1E1D0F0A0B0";

fn entries(text: &str) -> (Option<String>, Vec<ShippingEntry>) {
    let list = read(std::io::Cursor::new(text.as_bytes().to_vec())).unwrap();
    let batch = list.batch_id.clone();
    (batch, list.map(Result::unwrap).collect())
}

fn shipped(entry: &ShippingEntry) -> &Shipped {
    match entry {
        ShippingEntry::Shipped(s) => s,
        ShippingEntry::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

fn rejection(entry: &ShippingEntry) -> (ErrorName, &str) {
    match entry {
        ShippingEntry::Rejected(r) => (r.error, r.message.as_str()),
        ShippingEntry::Shipped(s) => panic!("shipped: {s:?}"),
    }
}

#[test]
fn upstreams_mes_device_info_json() {
    let text = format!(
        r#"{{"batchId": "production-batch-2024-001", "devices": [
            {{"certFingerprint": "{FP}", "deviceId": "DEVICE-001",
              "attributes": {{"DSN": "SN-2024-001", "FirmwareVersion": "1.2.3", "rev": 4}}}},
            {{"deviceId": "DEVICE-002"}}
        ]}}"#
    );
    let (batch, found) = entries(&text);
    assert_eq!(batch.as_deref(), Some("production-batch-2024-001"));
    assert_eq!(found.len(), 2);
    let first = shipped(&found[0]);
    assert_eq!(first.index, 0);
    assert_eq!(
        first.certificate_id.as_deref(),
        Some(FP.to_ascii_lowercase().as_str())
    );
    assert_eq!(first.device_id.as_deref(), Some("DEVICE-001"));
    assert_eq!(first.attributes["DSN"], "SN-2024-001");
    assert_eq!(first.attributes["rev"], "4");
    let second = shipped(&found[1]);
    assert_eq!((second.index, second.certificate_id.as_deref()), (1, None));
}

#[test]
fn a_bare_array_and_a_batch_id_after_the_devices() {
    let (batch, found) = entries(r#"[{"deviceId": "a"}, {"deviceId": "b"}]"#);
    assert_eq!((batch, found.len()), (None, 2));
    let (batch, found) = entries(r#"{"devices": [{"deviceId": "a"}], "batchId": "b-1"}"#);
    assert_eq!((batch, found.len()), (None, 1));
}

#[test]
fn csv_with_a_header_and_attribute_columns() {
    let text = format!(
        "\u{feff}certFingerprint, deviceId, DSN, MAC\n{FP}, DEVICE-001, SN-1, \n,DEVICE-002,SN-2,AA:BB\n"
    );
    let (batch, found) = entries(&text);
    assert_eq!(batch, None);
    let first = shipped(&found[0]);
    assert_eq!(first.device_id.as_deref(), Some("DEVICE-001"));
    assert_eq!(first.attributes.len(), 1, "an empty cell is no attribute");
    let second = shipped(&found[1]);
    assert_eq!(second.certificate_id, None);
    assert_eq!(second.attributes["MAC"], "AA:BB");
}

#[test]
fn bad_entries_are_rejected_with_their_names_and_the_rest_go_on() {
    let text = format!(
        "certificate_id,device_id,note\n\
         xyz,d1,\n\
         ,,\n\
         {FP},d2,bad value!\n\
         {FP},d3,\n\
         ,d3,\n\
         ,d4,\n"
    );
    let (_, found) = entries(&text);
    // None: shipped.
    let names: Vec<Option<ErrorName>> = found
        .iter()
        .map(|e| match e {
            ShippingEntry::Rejected(r) => Some(r.error),
            ShippingEntry::Shipped(_) => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            Some(ErrorName::InvalidFingerprint),
            Some(ErrorName::MissingIdentity),
            Some(ErrorName::InvalidAttribute),
            None,
            Some(ErrorName::DuplicateDevice),
            None,
        ]
    );
    let (_, message) = rejection(&found[0]);
    assert!(message.contains("64 hexadecimal"), "{message}");
    assert_eq!(found.len(), 6);
    // The same certificate twice: the second is a duplicate.
    let text = format!("certificateId\n{FP}\n{}\n", FP.to_ascii_lowercase());
    let (_, found) = entries(&text);
    assert_eq!(rejection(&found[1]).0, ErrorName::DuplicateCertificate);
}

#[test]
fn json_devices_of_the_wrong_shape_are_rejected_not_fatal() {
    let (_, found) = entries(
        r#"{"devices": [3, {"deviceId": "a", "attributes": [1]}, {"deviceId": "b", "attributes": {"x": {"y": 1}}}, {"deviceId": "c"}]}"#,
    );
    assert_eq!(rejection(&found[0]).0, ErrorName::MissingIdentity);
    assert!(rejection(&found[0]).1.contains("a number"));
    assert_eq!(rejection(&found[1]).0, ErrorName::InvalidAttribute);
    assert_eq!(rejection(&found[2]).0, ErrorName::InvalidAttribute);
    assert_eq!(shipped(&found[3]).device_id.as_deref(), Some("c"));
}

#[test]
fn unreadable_lists_are_errors_naming_where() {
    let fail = |text: &str| -> String {
        match read(std::io::Cursor::new(text.as_bytes().to_vec())) {
            Err(e) => e.to_string(),
            Ok(list) => list
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .next()
                .unwrap_or_else(|| panic!("no error for {text:?}")),
        }
    };
    assert!(fail("").contains("empty"));
    assert!(fail("   \n ").contains("empty"));
    assert!(fail("a,b\n1,2\n").contains("neither a certificateId"));
    assert!(fail(r#"{"batchId": "b"}"#).contains("devices"));
    let truncated = fail(r#"{"devices": [{"deviceId": "a"}, {"deviceId": "#);
    assert!(truncated.contains("at entry 1"), "{truncated}");
    assert!(fail("deviceId,x\na\n").contains("at entry 0"));
    let huge = format!(
        r#"[{{"deviceId": "a", "attributes": {{"x": "{}"}}}}]"#,
        "y".repeat(70_000)
    );
    assert!(fail(&huge).contains("more than"), "{}", fail(&huge));
}

#[test]
fn a_consumer_that_stops_early_does_not_hang() {
    let devices: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"deviceId": "d{i}"}}"#))
        .collect();
    let text = format!(r#"{{"devices": [{}]}}"#, devices.join(","));
    let list = read(std::io::Cursor::new(text.into_bytes())).unwrap();
    assert_eq!(list.take(3).count(), 3);
}
