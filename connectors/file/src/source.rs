use std::path::PathBuf;

use async_trait::async_trait;
use framework::{
    connector::StageContext, event_time::parse_millis, observe::Progress, ConfigIssue,
    ConnectorConfig, ConnectorError, OutputRecord, RecordType, Source, SourceConnector,
    SourceContext, SourceEnd,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::BufReader;

use crate::lines::{read_line, Line};
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
    /// Longest line accepted, in bytes (1 B to 64 MiB; default 1 MiB). A longer line is
    /// refused as `line_too_long` (its first bytes are dead-lettered) without being
    /// buffered whole.
    #[serde(default = "default_max_line_bytes")]
    #[schemars(range(min = 1, max = 67_108_864))]
    pub max_line_bytes: u64,
}

/// Largest `max_line_bytes`: a line is one record, far beyond any broker's message size.
pub const MAX_LINE_BYTES_LIMIT: u64 = 64 << 20;

fn default_max_line_bytes() -> u64 {
    1 << 20
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
        if !(1..=MAX_LINE_BYTES_LIMIT).contains(&self.max_line_bytes) {
            issues.push(ConfigIssue::new(
                "max_line_bytes",
                format!("max_line_bytes must be between 1 and {MAX_LINE_BYTES_LIMIT}"),
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
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let limit = usize::try_from(self.config.max_line_bytes).unwrap_or(usize::MAX);
        let mut buf = Vec::new();
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
                next = read_line(&mut reader, &mut buf, limit) => next,
            };
            let Some(line) =
                next.map_err(|e| ConnectorError::io(format!("reading {}", path.display()), e))?
            else {
                break;
            };
            line_number += 1;
            let bytes = match line {
                Line::Complete { bytes } => bytes,
                Line::TooLong { bytes } => {
                    let detail = format!(
                        "line {line_number}: {} bytes, longer than max_line_bytes {}",
                        bytes.saturating_sub(1),
                        self.config.max_line_bytes
                    );
                    ctx.reject("line_too_long", detail, std::mem::take(&mut buf))
                        .await?;
                    progress.advance(bytes, 0);
                    continue;
                }
            };
            let text = match std::str::from_utf8(&buf) {
                Ok(text) => text,
                Err(e) => {
                    let detail = format!("line {line_number}: {e}");
                    ctx.reject("invalid_utf8", detail, std::mem::take(&mut buf))
                        .await?;
                    progress.advance(bytes, 0);
                    continue;
                }
            };
            if text.trim().is_empty() {
                progress.advance(bytes, 0);
                continue;
            }
            match self.parse_line(line_number, text) {
                Ok((key, timestamp_ms)) => {
                    ctx.emit(OutputRecord {
                        key,
                        payload: std::mem::take(&mut buf),
                        timestamp_ms,
                    })
                    .await?;
                    emitted += 1;
                    progress.advance(bytes, 1);
                }
                Err((reason, detail)) => {
                    ctx.reject(reason, detail, std::mem::take(&mut buf)).await?;
                    progress.advance(bytes, 0);
                }
            }
        }
        progress.finish();
        info!(stage = %self.stage, emitted, "replayed {}", path.display());
        Ok(SourceEnd::Exhausted)
    }
}
