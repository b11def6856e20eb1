//! What each stage of a running pipeline is doing, for `/health`, `/ready` and logs.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

/// Life cycle of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum StageState {
    /// Built, not yet connected.
    Starting,
    /// Running; a source is ready once started, a consumer once it has its partitions.
    Running { ready: bool },
    /// Ended normally (bounded input done, or stopped on request).
    Finished,
    /// Ended with an error (the pipeline is stopping).
    Failed(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub connector: &'static str,
    #[serde(flatten)]
    pub state: StageState,
}

/// Shared, cheaply cloned view of every stage's state.
#[derive(Debug, Clone, Default)]
pub struct PipelineStatus {
    stages: Arc<Mutex<BTreeMap<String, StageStatus>>>,
}

impl PipelineStatus {
    pub fn set(&self, stage: &str, connector: &'static str, state: StageState) {
        // Shown by /health and /ready: an error may quote configuration.
        let state = match state {
            StageState::Failed(message) => StageState::Failed(crate::redact::redact(&message)),
            other => other,
        };
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages.insert(stage.to_string(), StageStatus { connector, state });
    }

    /// Moves a running stage to ready (no effect on other states).
    pub fn mark_ready(&self, stage: &str) {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = stages.get_mut(stage) {
            if matches!(
                status.state,
                StageState::Running { .. } | StageState::Starting
            ) {
                status.state = StageState::Running { ready: true };
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, StageStatus> {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stage started and connected (or already finished).
    pub fn is_ready(&self) -> bool {
        let stages = self.snapshot();
        !stages.is_empty()
            && stages.values().all(|s| {
                matches!(
                    s.state,
                    StageState::Running { ready: true } | StageState::Finished
                )
            })
    }

    /// No stage has failed.
    pub fn is_healthy(&self) -> bool {
        !self
            .snapshot()
            .values()
            .any(|s| matches!(s.state, StageState::Failed(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_stage_is_ready_and_unhealthy_after_a_failure() {
        let status = PipelineStatus::default();
        assert!(!status.is_ready());
        status.set("a", "file_source", StageState::Running { ready: true });
        status.set("b", "file_sink", StageState::Running { ready: false });
        assert!(!status.is_ready());
        status.mark_ready("b");
        assert!(status.is_ready());
        assert!(status.is_healthy());
        status.set("b", "file_sink", StageState::Failed("boom".into()));
        assert!(!status.is_healthy());
        assert!(!status.is_ready());
    }
}
