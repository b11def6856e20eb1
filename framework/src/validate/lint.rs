//! Warnings of `pipeline validate`: a pipeline that runs but probably does not do what its
//! author meant. `--deny-warnings` makes them fatal (for CI).
//!
//! * a stage's `output` topic that no stage reads;
//! * a `dead_letter` topic that no stage reads;
//!   (both unless the topic is declared `read_externally: true` under `topics`)
//! * each connector's own warnings ([`crate::connector::ConnectorConfig::warnings`]), e.g.
//!   a `moving_stats` lateness longer than its shortest window.

use std::collections::HashSet;

use super::{Diagnostic, ValidatedPipeline};
use crate::{
    connector::ValidationContext,
    yaml::{child_index, child_key, Positions},
};

/// The warnings of a valid pipeline, in file order.
pub fn warnings(
    file: &str,
    positions: &Positions,
    pipeline: &ValidatedPipeline,
) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let mut warn = |path: String, message: String| {
        let position = positions.value(&path);
        found.push(Diagnostic {
            file: file.to_string(),
            line: position.line,
            column: position.column,
            path,
            message,
        });
    };
    let read: HashSet<&str> = pipeline
        .stages
        .iter()
        .flat_map(|s| s.input_topics.iter().map(String::as_str))
        .collect();
    let read_outside = |topic: &str| {
        pipeline
            .spec
            .topics
            .get(topic)
            .is_some_and(|t| t.read_externally)
    };
    for (i, stage) in pipeline.stages.iter().enumerate() {
        let path = child_index("stages", i);
        let name = &stage.spec.name;
        if let Some(topic) = &stage.spec.output {
            if !read.contains(topic.as_str()) && !read_outside(topic) {
                warn(
                    child_key(&path, "output"),
                    format!("no stage reads topic {topic:?}, the output of stage {name:?} (declare it in `topics` with `read_externally: true` if something outside this pipeline does)"),
                );
            }
        }
        if let Some(topic) = &stage.spec.dead_letter {
            if !read.contains(topic.as_str()) && !read_outside(topic) {
                warn(
                    child_key(&path, "dead_letter"),
                    format!("no stage reads dead-letter topic {topic:?} of stage {name:?}: rejected records would go unnoticed (declare it in `topics` with `read_externally: true` if something outside this pipeline does)"),
                );
            }
        }
        let check = (stage.registration.check)(&stage.spec.config, &ValidationContext::default());
        let config_path = child_key(&path, "config");
        for issue in check.warnings {
            let issue_path = super::config_issue_path(&config_path, &issue.path);
            warn(issue_path, issue.message);
        }
    }
    found.sort_by(|a, b| (a.line, a.column, &a.path).cmp(&(b.line, b.column, &b.path)));
    found
}
