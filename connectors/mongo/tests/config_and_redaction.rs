//! Config checks, registration, and credential redaction (no server needed except where
//! the URI is deliberately unreachable).

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use connector_mongo::{MongoSink, MongoSinkConfig, WriteAcknowledgment};
use framework::{
    connector::{ConnectorKind, ConnectorRegistration, ValidationContext},
    ConnectorConfig, ConnectorError, Sink, SinkContext,
};
use mongodb::options::Acknowledgment;
use tokio_util::sync::CancellationToken;

/// `value` over the required fields (`collection`, `key`) of the btcusdt layout.
fn parse(value: serde_json::Value) -> Result<MongoSinkConfig, serde_json::Error> {
    let mut base = btc_layout();
    if let (Some(base), Some(extra)) = (base.as_object_mut(), value.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(base)
}

fn issue_paths(config: &MongoSinkConfig) -> Vec<String> {
    config.check().into_iter().map(|i| i.path).collect()
}

#[test]
fn a_layout_alone_gets_the_documented_defaults_and_passes_checks() {
    let config = parse(serde_json::json!({})).unwrap();
    assert_eq!(
        config.uri,
        "mongodb://127.0.0.1:27017/?directConnection=true"
    );
    assert_eq!(config.database, "btc");
    assert_eq!(config.collection, "btc-price-zscore-{window}");
    assert_eq!(config.max_collections, 10_000);
    assert!(!config.time_series);
    assert_eq!(config.retry.initial_backoff.as_millis(), 100);
    assert_eq!(config.retry.max_backoff.as_millis(), 10_000);
    assert!(config.write_concern.journal);
    assert!(config.check().is_empty(), "{:?}", config.check());
    let bare: MongoSinkConfig =
        serde_json::from_value(serde_json::json!({"collection": "c", "key": ["id"]})).unwrap();
    assert_eq!((bare.explode.as_deref(), bare.date_fields.len()), (None, 0));
    assert!(bare.check().is_empty(), "{:?}", bare.check());
}

#[test]
fn collection_and_key_are_required() {
    let error =
        serde_json::from_value::<MongoSinkConfig>(serde_json::json!({"key": ["id"]})).unwrap_err();
    assert!(error.to_string().contains("collection"), "{error}");
    let error = serde_json::from_value::<MongoSinkConfig>(serde_json::json!({"collection": "c"}))
        .unwrap_err();
    assert!(error.to_string().contains("key"), "{error}");
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    assert!(parse(serde_json::json!({"collection_prefix": "x"})).is_err());
    assert!(parse(serde_json::json!({"write_concern": {"j": true}})).is_err());
    assert!(parse(serde_json::json!({"retry": {"initial": "1s"}})).is_err());
}

#[test]
fn layout_checks_name_the_offending_field() {
    let cases: &[(serde_json::Value, &str)] = &[
        (serde_json::json!({"collection": "z-{window"}), "collection"),
        (serde_json::json!({"collection": "z-}"}), "collection"),
        (serde_json::json!({"collection": "z-{}"}), "collection"),
        (serde_json::json!({"collection": "z-{a.b}"}), "collection"),
        (
            serde_json::json!({"collection": "system.{window}"}),
            "collection",
        ),
        (serde_json::json!({"collection": ""}), "collection"),
        (serde_json::json!({"collection": "{zscores}"}), "collection"),
        (
            serde_json::json!({"collection": "x".repeat(260)}),
            "collection",
        ),
        (serde_json::json!({"key": []}), "key"),
        (serde_json::json!({"key": ["symbol", "symbol"]}), "key[1]"),
        (serde_json::json!({"key": ["symbol", "data.ts"]}), "key[1]"),
        (serde_json::json!({"key": ["_id"]}), "key[0]"),
        (
            serde_json::json!({"date_fields": ["timestamp", ""]}),
            "date_fields[1]",
        ),
        (serde_json::json!({"explode": "symbol"}), "explode"),
        (serde_json::json!({"explode": "a.b"}), "explode"),
        (
            serde_json::json!({"time_series": true, "date_fields": []}),
            "date_fields",
        ),
        (serde_json::json!({"meta_field": "symbol"}), "meta_field"),
        (
            serde_json::json!({"time_series": true, "meta_field": "timestamp"}),
            "meta_field",
        ),
        (serde_json::json!({"max_collections": 0}), "max_collections"),
        (
            serde_json::json!({"max_collections": 1_000_001}),
            "max_collections",
        ),
    ];
    for (extra, path) in cases {
        let config = parse(extra.clone()).unwrap();
        assert_eq!(issue_paths(&config), vec![path.to_string()], "{extra}");
    }
}

#[test]
fn template_fields_are_public_for_validate() {
    assert_eq!(
        connector_mongo::template_fields("trades-{symbol}-{window}").unwrap(),
        vec!["symbol", "window"]
    );
    assert!(connector_mongo::template_fields("x-{").is_err());
}

#[test]
fn time_series_fields_default_to_the_first_date_and_the_other_key_field() {
    let config = parse(serde_json::json!({"time_series": true})).unwrap();
    assert_eq!(
        config.time_series_fields(),
        Some(("timestamp", Some("symbol")))
    );
    let several =
        parse(serde_json::json!({"time_series": true, "key": ["a", "b", "timestamp"]})).unwrap();
    assert_eq!(several.time_series_fields(), Some(("timestamp", None)));
    let chosen = parse(
        serde_json::json!({"time_series": true, "key": ["a", "b", "timestamp"], "meta_field": "b"}),
    )
    .unwrap();
    assert_eq!(chosen.time_series_fields(), Some(("timestamp", Some("b"))));
    assert_eq!(
        parse(serde_json::json!({})).unwrap().time_series_fields(),
        None
    );
}

#[test]
fn write_concern_accepts_a_node_count_or_majority_and_maps_to_the_driver() {
    let config = parse(
        serde_json::json!({"write_concern": {"w": "majority", "journal": false, "wtimeout": "5s"}}),
    )
    .unwrap();
    let wc = config.driver_write_concern();
    assert_eq!(wc.w, Some(Acknowledgment::Majority));
    assert_eq!(wc.journal, Some(false));
    assert_eq!(wc.w_timeout, Some(Duration::from_secs(5)));

    let config = parse(serde_json::json!({"write_concern": {"w": 2}})).unwrap();
    assert_eq!(config.write_concern.w, Some(WriteAcknowledgment::Nodes(2)));
    assert_eq!(
        config.driver_write_concern().w,
        Some(Acknowledgment::Nodes(2))
    );

    assert!(parse(serde_json::json!({"write_concern": {"w": "all"}})).is_err());
    assert!(parse(serde_json::json!({"write_concern": {"w": -1}})).is_err());
}

#[test]
fn checks_flag_unusable_values_with_their_paths() {
    let config = parse(serde_json::json!({
        "uri": "http://localhost",
        "database": "bad.name",
        "collection": "a$-{window}",
        "write_concern": {"w": 0, "wtimeout": "0s"},
        "retry": {"initial_backoff": "2s", "max_backoff": "1s"},
        "server_selection_timeout": "0s",
    }))
    .unwrap();
    assert_eq!(
        issue_paths(&config),
        vec![
            "uri",
            "database",
            "collection",
            "write_concern.w",
            "write_concern.wtimeout",
            "retry.max_backoff",
            "server_selection_timeout",
        ]
    );
    let zero =
        parse(serde_json::json!({"retry": {"initial_backoff": "0ms", "max_backoff": "0ms"}}))
            .unwrap();
    assert_eq!(issue_paths(&zero), vec!["retry.initial_backoff"]);
    for budget in ["500ms", "8d"] {
        let config = parse(serde_json::json!({"retry": {"max_elapsed": budget}})).unwrap();
        assert_eq!(issue_paths(&config), vec!["retry.max_elapsed"], "{budget}");
    }
    let ok = parse(serde_json::json!({"retry": {"max_elapsed": "10m"}})).unwrap();
    assert!(issue_paths(&ok).is_empty());
}

#[test]
fn registered_as_the_mongo_sink_reading_any_json_records() {
    let registration = ConnectorRegistration::find("mongo").expect("mongo is registered");
    assert_eq!(registration.kind, ConnectorKind::Sink);
    assert_eq!(registration.inputs.len(), 1);
    assert_eq!(registration.inputs[0].record_type.name(), "json");
    assert!(registration.output.is_none());
    let check = (registration.check)(&btc_layout(), &ValidationContext::default());
    assert!(check.issues.is_empty(), "{:?}", check.issues);
    let mut typo = btc_layout();
    typo["databse"] = serde_json::json!("btc");
    let check = (registration.check)(&typo, &ValidationContext::default());
    assert_eq!(check.issues.len(), 1);
}

#[test]
fn json_schema_documents_every_config_field() {
    let registration = ConnectorRegistration::find("mongo").unwrap();
    let schema = (registration.schema)();
    let text = schema.to_string();
    fn walk(value: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(object) = value.as_object() {
            if let Some(properties) = object.get("properties").and_then(|p| p.as_object()) {
                for (name, property) in properties {
                    let described = property.get("description").is_some()
                        || property.get("$ref").is_some() && property.get("description").is_some();
                    if !described {
                        missing.push(name.clone());
                    }
                }
            }
            for child in object.values() {
                walk(child, missing);
            }
        }
    }
    let mut missing = Vec::new();
    walk(&schema, &mut missing);
    assert!(
        missing.is_empty(),
        "undocumented fields {missing:?} in {text}"
    );
    for field in [
        "uri",
        "database",
        "collection",
        "explode",
        "key",
        "date_fields",
        "meta_field",
        "max_collections",
        "write_concern",
        "retry",
        "time_series",
        "wtimeout",
        "max_backoff",
    ] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "{field} missing from schema"
        );
    }
}

const PASSWORD: &str = "hunter2-S3cret";

#[test]
fn invalid_uri_error_at_build_never_shows_the_password() {
    let config =
        parse(serde_json::json!({"uri": format!("mongodb://alice:{PASSWORD}@/nohost")})).unwrap();
    let error: ConnectorError = match MongoSink::new(config, &stage()) {
        Ok(_) => panic!("a URI without a host must be refused"),
        Err(e) => e.into(),
    };
    let text = error.to_string();
    assert!(matches!(error, ConnectorError::Config(_)), "{error:?}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(text.contains("***@"), "{text}");
}

/// Collects every formatted log line, so the test can look for the password in them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn unreachable_server_errors_and_logs_never_show_the_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let port = free_port(); // nothing listens there
    let uri = format!(
        "mongodb://alice:{PASSWORD}@127.0.0.1:{port}/?directConnection=true&authSource=admin"
    );
    let config = config(
        &uri,
        "redaction",
        serde_json::json!({"server_selection_timeout": "200ms"}),
    );
    let mut sink = MongoSink::new(config, &stage()).unwrap();
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        trigger.cancel();
    });
    let payloads = payloads("BTCUSDT", 0..3);
    let error = sink
        .write(&records(&payloads), &SinkContext::new(shutdown))
        .await
        .expect_err("nothing listens on the port");

    let text = error.to_string();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(text.contains("shutdown requested"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "the cause names the server: {text}"
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("transient MongoDB error"),
        "expected retry logs, got: {logs}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    assert!(sink.counters().snapshot().retries >= 1);
}
