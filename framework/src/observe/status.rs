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
    /// Running but deliberately sending nothing until `until` (RFC 3339), e.g. a
    /// rate-limit `Retry-After`: not ready meanwhile.
    Waiting {
        reason: String,
        until: String,
        seconds: u64,
    },
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

    /// Marks a running stage as waiting for `duration` (`None`: running and ready again).
    pub fn set_waiting(
        &self,
        stage: &str,
        connector: &'static str,
        wait: Option<(&str, std::time::Duration)>,
    ) {
        let state = match wait {
            Some((reason, duration)) => {
                let until = chrono::Duration::from_std(duration)
                    .ok()
                    .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                StageState::Waiting {
                    reason: reason.to_string(),
                    until,
                    seconds: duration.as_secs(),
                }
            }
            None => StageState::Running { ready: true },
        };
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        // Never overrides a final state.
        if let Some(status) = stages.get(stage) {
            if matches!(status.state, StageState::Finished | StageState::Failed(_)) {
                return;
            }
        }
        stages.insert(stage.to_string(), StageStatus { connector, state });
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

    #[test]
    fn a_waiting_source_is_not_ready_and_shows_its_reason_and_wait() {
        let status = PipelineStatus::default();
        status.set("a", "binance", StageState::Running { ready: true });
        status.set_waiting(
            "a",
            "binance",
            Some(("rate_limited", std::time::Duration::from_secs(300))),
        );
        assert!(!status.is_ready());
        assert!(status.is_healthy());
        let json = serde_json::to_value(status.snapshot()).unwrap();
        assert_eq!(json["a"]["state"], "waiting");
        assert_eq!(json["a"]["detail"]["reason"], "rate_limited");
        assert_eq!(json["a"]["detail"]["seconds"], 300);
        status.set_waiting("a", "binance", None);
        assert!(status.is_ready());
    }
}
