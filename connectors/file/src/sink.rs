use std::path::PathBuf;

use async_trait::async_trait;
use framework::{
    connector::{InputPort, SinkContext, StageContext},
    ConfigIssue, ConnectorConfig, ConnectorError, InputRecord, RecordType, Sink, SinkConnector,
    WriteOutcome,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// Appends records to a JSON-lines file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to (created when missing); one record payload per line.
    pub path: PathBuf,
    /// Whether each batch is synced to disk before its offsets are committed. Turning it
    /// off is faster but a machine crash can lose committed records.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
}

fn default_fsync() -> bool {
    true
}

impl ConnectorConfig for FileSinkConfig {
    fn check(&self) -> Vec<ConfigIssue> {
        if self.path.as_os_str().is_empty() {
            vec![ConfigIssue::new(
                "path",
                "path is empty: name the file to append to",
            )]
        } else {
            Vec::new()
        }
    }
}

pub struct FileSink {
    config: FileSinkConfig,
    file: Option<tokio::fs::File>,
    buffer: Vec<u8>,
}

impl SinkConnector for FileSink {
    type Config = FileSinkConfig;
    const NAME: &'static str = "file_sink";
    const SUMMARY: &'static str = "Appends records to a JSON-lines file";
    const INPUTS: &'static [InputPort] = &[InputPort {
        name: "input",
        record_type: RecordType::ANY_JSON,
    }];

    fn build(
        config: FileSinkConfig,
        _stage: &StageContext,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(FileSink {
            config,
            file: None,
            buffer: Vec::new(),
        }))
    }
}

framework::register_sink!(FileSink);

impl FileSink {
    async fn file(&mut self) -> Result<&mut tokio::fs::File, ConnectorError> {
        if self.file.is_none() {
            let path = &self.config.path;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ConnectorError::io(format!("creating {}", parent.display()), e))?;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| ConnectorError::io(format!("opening {}", path.display()), e))?;
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| ConnectorError::Fatal("file sink has no open file".into()))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(
        &mut self,
        batch: &[InputRecord<'_>],
        _ctx: &SinkContext,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        self.buffer.clear();
        for (i, record) in batch.iter().enumerate() {
            if record.payload.contains(&b'\n') {
                // A newline would split the record into two lines of the file.
                outcome
                    .rejected
                    .push((i, "embedded_newline", "payload contains a newline".into()));
                continue;
            }
            self.buffer.extend_from_slice(record.payload);
            self.buffer.push(b'\n');
        }
        let buffer = std::mem::take(&mut self.buffer);
        let path = self.config.path.display().to_string();
        let fsync = self.config.fsync;
        let file = self.file().await?;
        file.write_all(&buffer)
            .await
            .map_err(|e| ConnectorError::io(format!("appending to {path}"), e))?;
        file.flush()
            .await
            .map_err(|e| ConnectorError::io(format!("flushing {path}"), e))?;
        if fsync {
            file.sync_data()
                .await
                .map_err(|e| ConnectorError::io(format!("syncing {path}"), e))?;
        }
        self.buffer = buffer;
        Ok(outcome)
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        if let Some(file) = self.file.as_mut() {
            file.sync_all()
                .await
                .map_err(|e| ConnectorError::io("syncing on close", e))?;
        }
        Ok(())
    }
}
