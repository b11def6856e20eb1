//! Runs a source stage: the connector emits, the runtime produces to Kafka.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{kafka, reject::Rejection, StageRuntime};
use crate::{
    connector::{SourceContext, SourceEnd, SourceEvent},
    error::FrameworkError,
    metrics::RateLimitedLog,
};

/// Records buffered between a source and its producer.
const SOURCE_CHANNEL: usize = 4096;

pub async fn run(
    stage: StageRuntime,
    mut source: Box<dyn crate::connector::Source>,
    shutdown: CancellationToken,
) -> Result<(), FrameworkError> {
    let output = stage
        .output
        .clone()
        .ok_or_else(|| stage.error("a source needs an output topic"))?;
    let (_, mut deliveries) = stage.deliveries()?;
    let (ctx, mut events) = SourceContext::channel(SOURCE_CHANNEL, shutdown.clone());
    let (status, stage_name, stage_connector) =
        (stage.status.clone(), stage.name.clone(), stage.connector);
    let mut ctx = ctx.with_wait_hook(std::sync::Arc::new(move |wait| {
        status.set_waiting(&stage_name, stage_connector, wait)
    }));
    let name = stage.name.clone();
    let connector = stage.connector;
    let runner = tokio::spawn(async move {
        let result = source.run(&mut ctx).await;
        drop(ctx);
        result
    });
    stage.metrics.up.set(1.0);
    stage.status.set(
        &stage.name,
        stage.connector,
        super::StageState::Running { ready: true },
    );
    let mut log = RateLimitedLog::new(std::time::Duration::from_secs(10));
    // A source runs as one process: it is the single part of its output's writer.
    let writer = kafka::Writer::single(&stage.name);
    let partitions = stage.partitions_of(&output);
    while let Some(event) = events.recv().await {
        match event {
            SourceEvent::Record(record) => {
                stage.metrics.records_out.increment(1);
                stage
                    .metrics
                    .bytes_out
                    .increment(record.payload.len() as u64);
                deliveries.send_record(&output, &record).await?;
            }
            SourceEvent::Rejected {
                reason,
                detail,
                payload,
            } => {
                let rejection = Rejection {
                    reason,
                    detail: &detail,
                    source: connector,
                    key: None,
                    payload: &payload,
                    timestamp_ms: None,
                };
                stage.reject(&mut deliveries, &mut log, rejection).await?;
            }
            SourceEvent::Progress(event_ms) => {
                deliveries
                    .send_progress(&output, partitions, &writer, event_ms)
                    .await?;
            }
        }
    }
    let end = runner
        .await
        .map_err(|e| stage.error(format!("source task panicked: {e}")))?
        .map_err(|source| FrameworkError::Stage {
            stage: name.clone(),
            connector: connector.to_string(),
            source,
        })?;
    deliveries.wait_all().await?;
    if end == SourceEnd::Exhausted {
        info!(stage = %name, topic = %output, "input exhausted: signalling end of input downstream");
        for topic in std::iter::once(&output).chain(stage.dead_letter.iter()) {
            deliveries
                .send_end_of_input(topic, stage.partitions_of(topic), &writer)
                .await?;
        }
    } else if !shutdown.is_cancelled() {
        warn!(stage = %name, "source stopped without being asked to");
    }
    stage.metrics.up.set(0.0);
    info!(stage = %name, "source stage finished");
    Ok(())
}
