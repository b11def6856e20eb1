//! Log output on stderr: the human format (unchanged), or one JSON object per line with
//! the event's fields and those of its stage (`stage`, `connector`).

use std::fmt;

use clap::ValueEnum;
use framework::redact::RedactingWriter;
use serde_json::{Map, Value};
use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        format::{JsonFields, Writer},
        FmtContext, FormatEvent, FormatFields, FormattedFields,
    },
    registry::LookupSpan,
    EnvFilter,
};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Default filter when RUST_LOG is unset.
pub const DEFAULT_FILTER: &str = "info,rdkafka=warn";

/// Installs the logger; `default_filter` applies when RUST_LOG is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(|| RedactingWriter(std::io::stderr()))
            .init(),
        LogFormat::Json => {
            // The runtime's per-stage span (trace level, target `stage_context`) carries
            // the stage and connector; the text format leaves it off so as not to change.
            let filter = match "stage_context=trace".parse() {
                Ok(directive) => filter().add_directive(directive),
                Err(_) => filter(),
            };
            // Like the text format's `init`: also captures the `log` records of librdkafka.
            use tracing_subscriber::util::SubscriberInitExt;
            json_subscriber(filter, || RedactingWriter(std::io::stderr())).init();
        }
    }
}

/// The `--log-format json` subscriber writing to `writer`.
fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
        .finish()
}

/// `{"timestamp", "level", "target", "message", <event fields>, <span fields>}`.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert(
            "timestamp".into(),
            framework::event_time::format_millis(now_ms).into(),
        );
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(span_fields)) =
                        serde_json::from_str::<Value>(&fields.fields)
                    {
                        object.extend(span_fields);
                    }
                }
            }
        }
        event.record(&mut Visitor(&mut object));
        writeln!(writer, "{}", Value::Object(object))
    }
}

struct Visitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_event_fields_and_the_stage_and_connector_of_its_span() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let filter = EnvFilter::new("info,stage_context=trace");
        let subscriber = json_subscriber(filter, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::trace_span!(target: "stage_context", "stage", stage = "moving", connector = "moving_stats");
            let _entered = span.enter();
            tracing::info!(partition = 2, "window closed");
            tracing::debug!("filtered out");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).expect("one JSON object per line");
        assert_eq!(line["message"], "window closed");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["partition"], 2);
        assert_eq!(line["stage"], "moving");
        assert_eq!(line["connector"], "moving_stats");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
