//! "What passes `validate` runs": for pipelines whose framework settings (durations,
//! partitions, replication, batch sizes) are drawn from valid and invalid values alike,
//! every pipeline that validates builds each of its stages without panicking, and its
//! settings are ones the runtime can use (a ticking commit interval, a batch buffer that
//! can be allocated).

use std::panic::{catch_unwind, AssertUnwindSafe};

use framework::{
    connector::{Builder, StageContext},
    validate::validate_source,
};
use proptest::prelude::*;

// Links every built-in connector so that it registers itself.
extern crate connector_binance;
extern crate connector_file;
extern crate connector_mongo;
extern crate connector_moving_stats;
extern crate connector_zscore;

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0s".to_string()),
        Just("0ms".to_string()),
        (0u64..5_000_000).prop_map(|n| format!("{n}ms")),
        (0u64..100_000).prop_map(|n| format!("{n}s")),
        Just("99999999999d".to_string()),
        Just("9223372036854775807ms".to_string()),
    ]
}

fn count() -> impl Strategy<Value = i128> {
    prop_oneof![
        Just(0i128),
        Just(-1),
        1i128..100,
        Just(10_000),
        Just(100_000),
        Just(100_001),
        Just(i64::MAX as i128),
        Just(u64::MAX as i128),
        Just(u64::MAX as i128 * 16),
    ]
}

fn pipeline(
    commit: String,
    wait: String,
    max_records: i128,
    partitions: i128,
    replication: i128,
) -> String {
    format!(
        r#"name: prop
kafka:
  brokers: localhost:9092
  commit_interval: {commit}
  partitions: {partitions}
  replication_factor: {replication}
topics:
  prices: {{ partitions: {partitions}, replication_factor: {replication} }}
stages:
  - name: read
    type: file_source
    output: prices
    config: {{ path: in.jsonl, key_field: symbol, timestamp_field: timestamp }}
  - name: stats
    type: moving_stats
    input: prices
    output: stats
    config: {{ windows: [30s, 1m], slide: 1s }}
  - name: zscore
    type: zscore
    inputs: {{ prices: prices, stats: stats }}
    output: zscores
    config: {{}}
  - name: write
    type: file_sink
    input: zscores
    batch: {{ max_records: {max_records}, max_wait: {wait} }}
    config: {{ path: out.jsonl }}
"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_pipeline_that_validates_builds_every_stage_without_panicking(
        commit in duration(),
        wait in duration(),
        max_records in count(),
        partitions in count(),
        replication in count(),
    ) {
        let text = pipeline(commit, wait, max_records, partitions, replication);
        let Ok(validated) = validate_source("prop.yaml", &text, &|_| None) else {
            return Ok(());
        };
        let kafka = &validated.spec.kafka;
        // What the runtime does with the settings: a commit ticker, a batch buffer.
        let built = catch_unwind(AssertUnwindSafe(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let _ticker = tokio::time::interval(kafka.commit_interval.as_std());
            });
            for stage in &validated.stages {
                let _buffer: Vec<[u8; 256]> = Vec::with_capacity(stage.spec.batch.max_records);
                let _ = stage.spec.batch.max_wait.as_std();
                let context = StageContext {
                    pipeline: validated.spec.name.clone(),
                    stage: stage.spec.name.clone(),
                    connector: stage.registration.name,
                };
                let config = &stage.spec.config;
                let ok = match stage.registration.builder {
                    Builder::Source(build) => build(config, &context).is_ok(),
                    Builder::Transform(build) => build(config, &context).is_ok(),
                    Builder::Sink(build) => build(config, &context).is_ok(),
                };
                assert!(ok, "stage {} of a valid pipeline failed to build", stage.spec.name);
            }
        }));
        prop_assert!(built.is_ok(), "a validated pipeline panicked while building:\n{text}");
        prop_assert!(kafka.partitions >= 1 && kafka.replication_factor >= 1);
    }
}

#[test]
fn the_values_that_used_to_pass_and_then_panic_are_rejected() {
    for (commit, max_records) in [("0s", 1_000i128), ("1s", u64::MAX as i128)] {
        let text = pipeline(commit.into(), "100ms".into(), max_records, 3, 1);
        assert!(
            validate_source("p.yaml", &text, &|_| None).is_err(),
            "commit_interval {commit}, max_records {max_records} must not validate"
        );
    }
}
