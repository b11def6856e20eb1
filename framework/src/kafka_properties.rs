//! Rules for the Kafka settings of a pipeline file that JSON Schema cannot express:
//! client properties the runtime owns, librdkafka's own acceptance of the others, and
//! per-topic configs. Pure: nothing here opens a connection.

use rdkafka::{config::ClientConfig, error::KafkaError};

use crate::spec::{KafkaSpec, PropertyValue, TopicSpec};

/// Client properties the runtime sets itself, with why a pipeline file may not override
/// them. Overriding any of these silently breaks at-least-once or the stage wiring.
pub const RUNTIME_OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set it with `kafka.brokers`"),
    ("metadata.broker.list", "set it with `kafka.brokers`"),
    (
        "group.id",
        "each stage has its own consumer group: set `group` on the stage or `kafka.group_prefix`",
    ),
    (
        "enable.auto.commit",
        "the runtime commits offsets only after everything derived from them is acknowledged; auto-commit would lose records on a crash",
    ),
    (
        "auto.commit.interval.ms",
        "offsets are committed by the runtime (set `kafka.commit_interval`)",
    ),
    (
        "enable.auto.offset.store",
        "the runtime stores an offset only once its outputs are acknowledged; storing on receipt would lose records on a crash",
    ),
    (
        "isolation.level",
        "stages read committed data only; read_uncommitted would let aborted records of transactional writers in",
    ),
    (
        "auto.offset.reset",
        "a new consumer group starts at the beginning of its input; `latest` would skip everything written before the stage first ran",
    ),
    (
        "partition.assignment.strategy",
        "keyed state and end-of-input tracking rely on the eager range assignment of co-partitioned inputs",
    ),
    (
        "group.protocol",
        "the runtime uses the classic consumer-group protocol with its own rebalance handling",
    ),
    (
        "enable.idempotence",
        "the producer must be idempotent so that retried sends neither duplicate nor reorder records",
    ),
    (
        "acks",
        "idempotent delivery needs acknowledgement by all in-sync replicas",
    ),
    (
        "request.required.acks",
        "idempotent delivery needs acknowledgement by all in-sync replicas",
    ),
    (
        "transactional.id",
        "the runtime does not use transactions; a transactional producer fails every send made outside one",
    ),
];

/// Why a runtime-owned property may not be set, or `None` when it may.
pub fn owned_reason(name: &str) -> Option<&'static str> {
    RUNTIME_OWNED_PROPERTIES
        .iter()
        .find(|(owned, _)| owned.eq_ignore_ascii_case(name.trim()))
        .map(|(_, why)| *why)
}

/// The same error without the property's value: librdkafka's configuration errors carry
/// the value verbatim, and a misspelled secret (`sasl.pasword`) is not recognised as one
/// by its name, so no value is ever shown. A value echoed inside librdkafka's message
/// (`Invalid value "..."`) is masked when the name looks secret.
pub fn without_config_value(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, message, name, value) => {
            let message = if crate::redact::is_secret_property(&name) && !value.is_empty() {
                message.replace(value.as_str(), "***")
            } else {
                message
            };
            KafkaError::ClientConfig(code, message, name, "***".into())
        }
        other => other,
    }
}

/// Hands every property to librdkafka's own configuration parser (no network), so that
/// unknown names, bad values and features missing from this build (e.g. GSSAPI) are
/// reported by `validate` instead of at start-up. Returns the property and librdkafka's
/// message for each one it rejects.
pub fn librdkafka_rejections(kafka: &KafkaSpec) -> Vec<(String, String)> {
    let mut rejected = Vec::new();
    for (name, value) in &kafka.properties {
        if owned_reason(name).is_some() {
            continue;
        }
        let mut config = ClientConfig::new();
        config.set(name, value.to_string());
        match config.create_native_config() {
            Err(e) => rejected.push((name.clone(), without_config_value(e).to_string())),
            Ok(native) if matches!(name.as_str(), "sasl.mechanism" | "sasl.mechanisms") => {
                // librdkafka only notices a mechanism it was built without when a client
                // is created; check it here so `validate` says so.
                let features = native.get("builtin.features").unwrap_or_default();
                let mechanism = value.to_string();
                let needed = match mechanism.trim() {
                    "GSSAPI" => "sasl_gssapi",
                    "PLAIN" => "sasl_plain",
                    "SCRAM-SHA-256" | "SCRAM-SHA-512" => "sasl_scram",
                    "OAUTHBEARER" => "sasl_oauthbearer",
                    _ => "",
                };
                if needed.is_empty() || !features.split(',').any(|f| f == needed) {
                    rejected.push((
                        name.clone(),
                        format!("SASL mechanism {mechanism:?} is not built into this pipeline binary (available: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"),
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    rejected
}

/// Topic-level configs a pipeline file may set (Kafka's names), with the kind of value
/// each takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicConfigKind {
    /// Milliseconds or bytes; `-1` means unlimited where Kafka allows it.
    Size {
        min: i64,
    },
    /// A positive count.
    Count,
    Boolean,
    Ratio,
    CleanupPolicy,
    Compression,
    TimestampType,
}

const TOPIC_CONFIGS: &[(&str, TopicConfigKind)] = {
    use TopicConfigKind::*;
    &[
        ("cleanup.policy", CleanupPolicy),
        ("compression.type", Compression),
        ("delete.retention.ms", Size { min: 0 }),
        ("file.delete.delay.ms", Size { min: 0 }),
        ("flush.messages", Count),
        ("flush.ms", Size { min: 0 }),
        ("index.interval.bytes", Size { min: 0 }),
        ("local.retention.bytes", Size { min: -2 }),
        ("local.retention.ms", Size { min: -2 }),
        ("max.compaction.lag.ms", Size { min: 1 }),
        ("max.message.bytes", Size { min: 0 }),
        ("message.timestamp.after.max.ms", Size { min: 0 }),
        ("message.timestamp.before.max.ms", Size { min: 0 }),
        ("message.timestamp.type", TimestampType),
        ("min.cleanable.dirty.ratio", Ratio),
        ("min.compaction.lag.ms", Size { min: 0 }),
        ("min.insync.replicas", Count),
        ("preallocate", Boolean),
        ("remote.storage.enable", Boolean),
        ("retention.bytes", Size { min: -1 }),
        ("retention.ms", Size { min: -1 }),
        ("segment.bytes", Size { min: 14 }),
        ("segment.index.bytes", Size { min: 4 }),
        ("segment.jitter.ms", Size { min: 0 }),
        ("segment.ms", Size { min: 1 }),
        ("unclean.leader.election.enable", Boolean),
    ]
};

/// Names of the topic configs a pipeline file may set.
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|(name, _)| *name)
}

/// Problems of one topic's `config:` entries: `(config name, message)`. `replication`
/// is the replication factor the topic is created with (for `min.insync.replicas`).
pub fn topic_config_issues(topic: &TopicSpec, replication: i32) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    for (name, value) in &topic.config {
        let Some((_, kind)) = TOPIC_CONFIGS
            .iter()
            .find(|(known, _)| *known == name.as_str())
        else {
            let hint = crate::suggest::did_you_mean(name, topic_config_names());
            issues.push((name.clone(), format!("unknown topic config {name:?}{hint}")));
            continue;
        };
        if let Some(message) = check_topic_value(*kind, value) {
            issues.push((name.clone(), message));
            continue;
        }
        if name == "min.insync.replicas" {
            if let PropertyValue::Integer(n) = value {
                if *n > i64::from(replication) {
                    issues.push((name.clone(), format!("min.insync.replicas {n} is larger than the topic's replication factor {replication}: every write would fail")));
                }
            }
        }
    }
    issues
}

fn check_topic_value(kind: TopicConfigKind, value: &PropertyValue) -> Option<String> {
    use TopicConfigKind::*;
    let text = value.to_string();
    let one_of = |allowed: &[&str]| {
        (!allowed.contains(&text.as_str()))
            .then(|| format!("{text:?} is not one of {}", allowed.join(", ")))
    };
    match (kind, value) {
        (Size { min }, PropertyValue::Integer(n)) => {
            (*n < min).then(|| format!("must be at least {min}, got {n}"))
        }
        (Count, PropertyValue::Integer(n)) => {
            (!(1..=i64::from(i32::MAX)).contains(n)).then(|| format!("must be at least 1, got {n}"))
        }
        (Size { .. } | Count, _) => Some(format!("expected a whole number, found {text:?}")),
        (Boolean, PropertyValue::Boolean(_)) => None,
        (Boolean, _) => Some(format!("expected true or false, found {text:?}")),
        (Ratio, PropertyValue::Float(r)) if (0.0..=1.0).contains(r) => None,
        (Ratio, PropertyValue::Integer(0 | 1)) => None,
        (Ratio, _) => Some(format!("expected a number from 0 to 1, found {text:?}")),
        (CleanupPolicy, PropertyValue::Text(_)) => {
            let mut parts: Vec<&str> = text.split(',').map(str::trim).collect();
            parts.sort_unstable();
            parts.dedup();
            let valid =
                !parts.is_empty() && parts.iter().all(|p| *p == "compact" || *p == "delete");
            (!valid).then(|| {
                format!(
                    "{text:?} is not a cleanup policy: use delete, compact or \"compact,delete\""
                )
            })
        }
        (Compression, PropertyValue::Text(_)) => {
            one_of(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"])
        }
        (TimestampType, PropertyValue::Text(_)) => one_of(&["CreateTime", "LogAppendTime"]),
        (CleanupPolicy | Compression | TimestampType, _) => {
            Some(format!("expected a string, found {text:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn kafka(properties: &[(&str, PropertyValue)]) -> KafkaSpec {
        let yaml = "brokers: 127.0.0.1:1\n";
        let mut spec: KafkaSpec = serde_yaml::from_str(yaml).unwrap();
        spec.properties = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        spec
    }

    #[test]
    fn librdkafka_is_built_with_tls_sasl_plain_scram_and_every_compression_codec() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        let features: Vec<&str> = features.split(',').collect();
        for wanted in [
            "ssl",
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "zstd",
            "lz4",
            "snappy",
            "gzip",
        ] {
            assert!(
                features.contains(&wanted),
                "{wanted} missing from {features:?}"
            );
        }
        // Kerberos (GSSAPI) is deliberately left out: it needs Cyrus SASL (libsasl2) and a
        // Kerberos setup on every machine; `validate` says so when a file asks for it.
        assert!(!features.contains(&"sasl_gssapi"), "{features:?}");
    }

    #[test]
    fn runtime_owned_properties_are_recognised_whatever_their_case() {
        assert!(owned_reason("enable.auto.commit").is_some());
        assert!(owned_reason("Enable.Auto.Commit").is_some());
        assert!(owned_reason("isolation.level").is_some());
        assert!(owned_reason("sasl.username").is_none());
    }

    #[test]
    fn librdkafka_rejects_unknown_names_and_bad_values_but_accepts_tls_and_sasl() {
        let text = |s: &str| PropertyValue::Text(s.into());
        let good = kafka(&[
            ("security.protocol", text("SASL_SSL")),
            ("sasl.mechanism", text("SCRAM-SHA-512")),
            ("sasl.username", text("u")),
            ("sasl.password", text("p")),
            ("ssl.ca.location", text("/nonexistent/ca.pem")),
            ("compression.type", text("zstd")),
        ]);
        assert_eq!(librdkafka_rejections(&good), vec![]);
        let bad = kafka(&[
            ("sasl.pasword", text("p")),
            ("security.protocol", text("TLS")),
            ("sasl.mechanism", text("GSSAPI")),
        ]);
        let names: Vec<String> = librdkafka_rejections(&bad)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            vec!["sasl.mechanism", "sasl.pasword", "security.protocol"]
        );
    }

    #[test]
    fn a_rejected_property_never_shows_its_value_even_when_its_name_is_misspelled() {
        let text = |s: &str| PropertyValue::Text(s.into());
        let rejected = librdkafka_rejections(&kafka(&[
            ("sasl.pasword", text("hunter2-secret")),
            ("sasl_password", text("hunter3-secret")),
        ]));
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        for (name, message) in &rejected {
            assert!(message.contains(name.as_str()), "{message}");
            assert!(!message.contains("hunter"), "{message}");
        }
    }

    #[test]
    fn topic_configs_are_checked_by_name_kind_and_range() {
        let mut config = BTreeMap::new();
        config.insert("retention.ms".into(), PropertyValue::Integer(-1));
        config.insert(
            "cleanup.policy".into(),
            PropertyValue::Text("compact,delete".into()),
        );
        config.insert("min.insync.replicas".into(), PropertyValue::Integer(2));
        let topic = TopicSpec {
            config,
            ..TopicSpec::default()
        };
        assert_eq!(topic_config_issues(&topic, 3), vec![]);
        let issues = topic_config_issues(&topic, 1);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].0, "min.insync.replicas");

        let mut bad = BTreeMap::new();
        bad.insert("retention.ms".into(), PropertyValue::Integer(-5));
        bad.insert(
            "cleanup.policy".into(),
            PropertyValue::Text("forever".into()),
        );
        bad.insert("retention.msec".into(), PropertyValue::Integer(5));
        let topic = TopicSpec {
            config: bad,
            ..TopicSpec::default()
        };
        let issues = topic_config_issues(&topic, 1);
        let names: Vec<&str> = issues.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["cleanup.policy", "retention.ms", "retention.msec"]
        );
        assert!(
            issues[2].1.contains("did you mean \"retention.ms\""),
            "{issues:?}"
        );
    }
}
