use std::path::PathBuf;

use async_trait::async_trait;
use framework::{
    connector::StageContext, event_time::parse_millis, observe::Progress, ConfigIssue,
    ConnectorConfig, ConnectorError, OutputRecord, RecordType, Source, SourceConnector,
    SourceContext, SourceEnd,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::info;

/// Replays a JSON-lines file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// File to read: one JSON object per line (blank lines are skipped).
    pub path: PathBuf,
    /// Field whose string value becomes the Kafka key (e.g. `symbol`), so that records of
    /// one key stay in one partition, in order. Without it records have no key.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Field holding the record's event time (ISO 8601), used as the Kafka timestamp.
    /// Without it the timestamp is the time the line was read.
    #[serde(default)]
    pub timestamp_field: Option<String>,
}

impl ConnectorConfig for FileSourceConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.path.as_os_str().is_empty() {
            issues.push(ConfigIssue::new(
                "path",
                "path is empty: name the JSON-lines file to replay",
            ));
        }
        for (field, value) in [
            ("key_field", &self.key_field),
            ("timestamp_field", &self.timestamp_field),
        ] {
            if value.as_deref() == Some("") {
                issues.push(ConfigIssue::new(
                    field,
                    format!("{field} is empty: name a top-level field or remove it"),
                ));
            }
        }
        issues
    }
}

pub struct FileSource {
    config: FileSourceConfig,
    stage: String,
}

impl SourceConnector for FileSource {
    type Config = FileSourceConfig;
    const NAME: &'static str = "file_source";
    const SUMMARY: &'static str =
        "Replays a JSON-lines file (bounded: ends the input when the file ends)";
    const OUTPUT: RecordType = RecordType::ANY_JSON;

    fn build(
        config: FileSourceConfig,
        stage: &StageContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(Box::new(FileSource {
            config,
            stage: stage.stage.clone(),
        }))
    }
}

framework::register_source!(FileSource);

/// Why a line was refused: reason label and details.
type BadLine = (&'static str, String);

fn bad_line(line_number: u64, reason: &'static str, detail: String) -> BadLine {
    (reason, format!("line {line_number}: {detail}"))
}

impl FileSource {
    /// Key and timestamp of one line, or why the line is refused.
    fn parse_line(&self, line_number: u64, line: &str) -> Result<(Option<Vec<u8>>, i64), BadLine> {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| bad_line(line_number, "malformed_json", e.to_string()))?;
        let object = value.as_object().ok_or_else(|| {
            bad_line(
                line_number,
                "not_an_object",
                "expected a JSON object".into(),
            )
        })?;
        let key = match &self.config.key_field {
            Some(field) => match object.get(field) {
                Some(serde_json::Value::String(s)) => Some(s.as_bytes().to_vec()),
                Some(other) => Some(other.to_string().into_bytes()),
                None => {
                    return Err(bad_line(
                        line_number,
                        "missing_field",
                        format!("no key field {field:?}"),
                    ))
                }
            },
            None => None,
        };
        let timestamp = match &self.config.timestamp_field {
            Some(field) => {
                let text = object
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| {
                        bad_line(
                            line_number,
                            "missing_field",
                            format!("no string timestamp field {field:?}"),
                        )
                    })?;
                parse_millis(text)
                    .map_err(|e| bad_line(line_number, "invalid_timestamp", e.to_string()))?
            }
            None => chrono::Utc::now().timestamp_millis(),
        };
        Ok((key, timestamp))
    }
}

#[async_trait]
impl Source for FileSource {
    async fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd, ConnectorError> {
        let path = &self.config.path;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ConnectorError::io(format!("opening {}", path.display()), e))?;
        // A size we cannot read (a pipe, say) only costs the percentage and the ETA.
        let size = file
            .metadata()
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut progress = Progress::new(&self.stage, size);
        let mut lines = BufReader::with_capacity(1 << 16, file).lines();
        let mut line_number = 0u64;
        let mut emitted = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                _ = ctx.shutdown().cancelled() => {
                    progress.finish();
                    info!(stage = %self.stage, emitted, "stopped before the end of {}", path.display());
                    return Ok(SourceEnd::Stopped);
                }
                next = lines.next_line() => next,
            };
            let Some(line) =
                next.map_err(|e| ConnectorError::io(format!("reading {}", path.display()), e))?
            else {
                break;
            };
            line_number += 1;
            // The line plus its newline (the reader strips it).
            let bytes = line.len() as u64 + 1;
            if line.trim().is_empty() {
                progress.advance(bytes, 0);
                continue;
            }
            match self.parse_line(line_number, &line) {
                Ok((key, timestamp_ms)) => {
                    ctx.emit(OutputRecord {
                        key,
                        payload: line.into_bytes(),
                        timestamp_ms,
                    })
                    .await?;
                    emitted += 1;
                    progress.advance(bytes, 1);
                }
                Err((reason, detail)) => {
                    ctx.reject(reason, detail, line.into_bytes()).await?;
                    progress.advance(bytes, 0);
                }
            }
        }
        progress.finish();
        info!(stage = %self.stage, emitted, "replayed {}", path.display());
        Ok(SourceEnd::Exhausted)
    }
}
