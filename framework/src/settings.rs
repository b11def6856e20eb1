//! Checks of the pipeline file's own settings beyond its JSON Schema: duration ranges,
//! Kafka client properties (runtime-owned ones, librdkafka's acceptance) and per-topic
//! configs. Integer ranges live in the schema (`spec.rs`); durations are strings there.

use crate::{
    duration::DurationSpec,
    kafka_properties::{librdkafka_rejections, owned_reason, topic_config_issues},
    spec::PipelineSpec,
    yaml::{child_index, child_key},
};

/// Range of `kafka.commit_interval`: a zero interval cannot tick, and offsets committed
/// less often than hourly make every restart replay an hour.
pub const COMMIT_INTERVAL: (DurationSpec, DurationSpec) = (
    DurationSpec::from_millis(10),
    DurationSpec::from_secs(3_600),
);
/// Range of a stage's `batch.max_wait`.
pub const BATCH_MAX_WAIT: (DurationSpec, DurationSpec) =
    (DurationSpec::from_millis(0), DurationSpec::from_secs(600));

/// One problem with a setting; `at_key` points the diagnostic at the key rather than the
/// value (for settings that may not be given at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingIssue {
    pub path: String,
    pub at_key: bool,
    pub message: String,
}

/// Every problem with the framework-level settings of `spec`.
pub fn issues(spec: &PipelineSpec) -> Vec<SettingIssue> {
    let mut out = Vec::new();
    let value = |path: String, message: String| SettingIssue {
        path,
        at_key: false,
        message,
    };
    if let Some(message) = out_of_range(spec.kafka.commit_interval, COMMIT_INTERVAL) {
        out.push(value("kafka.commit_interval".into(), message));
    }
    for (i, stage) in spec.stages.iter().enumerate() {
        if let Some(message) = out_of_range(stage.batch.max_wait, BATCH_MAX_WAIT) {
            let path = child_key(&child_key(&child_index("stages", i), "batch"), "max_wait");
            out.push(value(path, message));
        }
    }
    for (name, topic) in &spec.topics {
        let replication = topic
            .replication_factor
            .unwrap_or(spec.kafka.replication_factor);
        for (config, message) in topic_config_issues(topic, replication) {
            let path = child_key(&child_key(&child_key("topics", name), "config"), &config);
            out.push(value(path, message));
        }
        if topic.external && (!topic.config.is_empty() || topic.replication_factor.is_some()) {
            out.push(SettingIssue {
                path: child_key(&child_key("topics", name), "external"),
                at_key: true,
                message: "an external topic is not created by this pipeline: `config` and `replication_factor` would have no effect".into(),
            });
        }
    }
    for name in spec.kafka.properties.keys() {
        if let Some(why) = owned_reason(name) {
            out.push(SettingIssue {
                path: child_key("kafka.properties", name),
                at_key: true,
                message: format!("{name:?} is set by the runtime and may not be overridden: {why}"),
            });
        }
    }
    for (name, message) in librdkafka_rejections(&spec.kafka) {
        out.push(SettingIssue {
            path: child_key("kafka.properties", &name),
            at_key: true,
            message: format!("librdkafka rejects this property: {message}"),
        });
    }
    out
}

fn out_of_range(value: DurationSpec, (min, max): (DurationSpec, DurationSpec)) -> Option<String> {
    (value < min || value > max).then(|| format!("{value} is out of range: use {min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kafka_extra: &str, stage_extra: &str) -> PipelineSpec {
        let yaml = format!(
            "name: p\nkafka:\n  brokers: b:1\n{kafka_extra}stages:\n  - name: s\n    type: file_sink\n    input: t\n{stage_extra}"
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[test]
    fn a_zero_commit_interval_and_a_huge_batch_wait_are_out_of_range() {
        let issues = issues(&spec(
            "  commit_interval: 0s\n",
            "    batch: { max_wait: 1h }\n",
        ));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["kafka.commit_interval", "stages[0].batch.max_wait"]
        );
        assert!(issues[0].message.contains("use 10ms to 1h"), "{issues:?}");
        assert!(issues_of_defaults_are_empty());
    }

    fn issues_of_defaults_are_empty() -> bool {
        issues(&spec("", "")).is_empty()
    }

    #[test]
    fn runtime_owned_properties_are_named_with_the_reason() {
        let issues = issues(&spec(
            "  properties:\n    enable.auto.commit: true\n    isolation.level: read_uncommitted\n    sasl.username: u\n",
            "",
        ));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "kafka.properties.enable.auto.commit",
                "kafka.properties.isolation.level"
            ]
        );
        assert!(issues[0]
            .message
            .contains("\"enable.auto.commit\" is set by the runtime"));
    }
}
