//! `pipeline tap`: streams the records a running pipeline reads or writes on some topics,
//! from its metrics server's `/api/tap` (a bounded, sampled ring of recent records).

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use framework::observe::tap::{TapBatch, TapRecord};
use serde_json::Value;

use crate::top::base_url;

const POLL: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Consecutive failed polls after which the pipeline is taken to be gone.
const MAX_FAILURES: u32 = 10;
/// Records shown of what the ring holds when tapping starts.
const BACKLOG: usize = 10;
/// Widest value column of the table.
const TABLE_VALUE_WIDTH: usize = 100;

#[derive(Clone, Copy, ValueEnum)]
pub enum TapFormat {
    /// One JSON object per line: {"topic","seq","timestamp_ms","key","value"}.
    Json,
    /// A compact table: event time, topic, key, value (or the chosen fields).
    Table,
}

pub struct TapArgs {
    pub url: String,
    pub topics: Vec<String>,
    pub fields: Vec<String>,
    pub limit: Option<u64>,
    pub format: TapFormat,
}

/// Streams until Ctrl-C, `--limit` records, or the pipeline stops answering.
pub fn run(args: TapArgs) -> Result<()> {
    let fields: Vec<(String, Vec<Step>)> = args
        .fields
        .iter()
        .map(|f| parse_path(f).map(|p| (f.clone(), p)))
        .collect::<Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = stream(&args, &fields) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

async fn stream(args: &TapArgs, fields: &[(String, Vec<Step>)]) -> Result<()> {
    let base = base_url(&args.url);
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let mut after: Vec<Option<u64>> = vec![None; args.topics.len()];
    let mut printed = 0u64;
    let mut failures = 0;
    let mut last_note = vec![None::<Instant>; args.topics.len()];
    let mut out = std::io::stdout().lock();
    if matches!(args.format, TapFormat::Table) {
        let header = if fields.is_empty() {
            "value".to_string()
        } else {
            fields
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join("  ")
        };
        writeln!(
            out,
            "{:<12}  {:<20}  {:<10}  {header}",
            "event time", "topic", "key"
        )?;
    }
    loop {
        for (i, topic) in args.topics.iter().enumerate() {
            let url = format!(
                "{base}/api/tap?topic={}&after={}&limit=500",
                encode(topic),
                after[i].unwrap_or(0)
            );
            let batch = match fetch(&client, &url).await {
                Ok(batch) => {
                    failures = 0;
                    batch
                }
                Err(Fetch::Refused(message)) => bail!("{message}"),
                Err(Fetch::Failed(e)) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        return Err(e.context("the pipeline stopped answering"));
                    }
                    continue;
                }
            };
            let records = match after[i] {
                // The first answer may hold records from before this tap: show a few.
                None => &batch.records[batch.records.len().saturating_sub(BACKLOG)..],
                Some(_) => &batch.records[..],
            };
            let sampled = after[i].is_some() && batch.seen > batch.kept;
            if sampled && last_note[i].is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                last_note[i] = Some(Instant::now());
                let note = format!(
                    "{topic}: sampled: showing {} of {} records",
                    batch.kept, batch.seen
                );
                match args.format {
                    TapFormat::Json => eprintln!("tap: {note}"),
                    TapFormat::Table => writeln!(out, "# {note}")?,
                }
            }
            after[i] = Some(batch.last_seq);
            for record in records {
                let line = match args.format {
                    TapFormat::Json => json_line(topic, record, fields),
                    TapFormat::Table => table_line(topic, record, fields),
                };
                // A closed pipe (`| head`) ends the tap quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
                printed += 1;
                if args.limit.is_some_and(|limit| printed >= limit) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Fetch {
    /// An answer that retrying cannot fix (unknown topic, bad request).
    Refused(String),
    Failed(anyhow::Error),
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<TapBatch, Fetch> {
    let failed = |e: anyhow::Error| Fetch::Failed(e);
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("requesting {url}"))
        .map_err(failed)?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))
        .map_err(failed)?;
    if status.is_client_error() {
        return Err(Fetch::Refused(format!("{url}: {}", body.trim())));
    }
    if !status.is_success() {
        return Err(failed(anyhow::anyhow!(
            "{url}: HTTP {status}: {}",
            body.trim()
        )));
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{url}: not a tap answer"))
        .map_err(failed)
}

fn encode(topic: &str) -> String {
    topic
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn chosen(record: &TapRecord, fields: &[(String, Vec<Step>)]) -> Value {
    if fields.is_empty() {
        return record.value.clone();
    }
    let picked = fields
        .iter()
        .map(|(name, path)| {
            (
                name.clone(),
                lookup(&record.value, path).unwrap_or(Value::Null),
            )
        })
        .collect();
    Value::Object(picked)
}

fn json_line(topic: &str, record: &TapRecord, fields: &[(String, Vec<Step>)]) -> String {
    serde_json::json!({
        "topic": topic,
        "seq": record.seq,
        "timestamp_ms": record.timestamp_ms,
        "key": record.key,
        "value": chosen(record, fields),
    })
    .to_string()
}

fn table_line(topic: &str, record: &TapRecord, fields: &[(String, Vec<Step>)]) -> String {
    let time = record.timestamp_ms.map_or("-".to_string(), time_of_day);
    let value = if fields.is_empty() {
        record.value.to_string()
    } else {
        // Each value under its field's name in the header.
        fields
            .iter()
            .map(|(name, path)| {
                let value = match lookup(&record.value, path) {
                    Some(Value::String(s)) => s,
                    Some(v) => v.to_string(),
                    None => "-".to_string(),
                };
                format!("{value:<width$}", width = name.len())
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let value = if value.chars().count() > TABLE_VALUE_WIDTH {
        let cut: String = value.chars().take(TABLE_VALUE_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        value
    };
    let key = record.key.as_deref().unwrap_or("-");
    format!("{time:<12}  {topic:<20}  {key:<10}  {value}")
        .trim_end()
        .to_string()
}

/// `HH:MM:SS.mmm` (UTC) of a time in ms since the epoch.
fn time_of_day(ms: i64) -> String {
    let of_day = ms.rem_euclid(86_400_000);
    let (h, m) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (s, milli) = (of_day / 1000 % 60, of_day % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

/// One step of a `--field` path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    /// `[3]` or `.3`: an array index (or an object key "3").
    Index(usize),
    /// `[30s]`: the array element whose first string field is `30s` (as the web view names
    /// series, e.g. `stats[30s].avg_price`).
    Label(String),
}

/// Parses `a.b`, `a[0].b`, `a.0.b` and `stats[30s].avg_price`.
fn parse_path(path: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path;
    let bad = |why: &str| anyhow::anyhow!("--field {path:?}: {why}");
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or_else(|| bad("unclosed ["))?;
            let label = &inner[..end];
            if label.is_empty() {
                return Err(bad("empty []"));
            }
            steps.push(match label.parse() {
                Ok(i) => Step::Index(i),
                Err(_) => Step::Label(label.to_string()),
            });
            rest = &inner[end + 1..];
            rest = rest.strip_prefix('.').unwrap_or(rest);
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let key = &rest[..end];
        if key.is_empty() {
            return Err(bad("empty field name"));
        }
        steps.push(match key.parse() {
            Ok(i) => Step::Index(i),
            Err(_) => Step::Key(key.to_string()),
        });
        rest = &rest[end..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    if steps.is_empty() {
        return Err(bad("empty path"));
    }
    Ok(steps)
}

fn lookup(value: &Value, path: &[Step]) -> Option<Value> {
    let mut at = value;
    for step in path {
        at = match (step, at) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            (Step::Index(i), Value::Object(map)) => map.get(&i.to_string())?,
            (Step::Label(label), Value::Array(items)) => items.iter().find(|item| {
                item.as_object()
                    .and_then(|o| o.values().find_map(Value::as_str))
                    .is_some_and(|s| s == label)
            })?,
            _ => return None,
        };
    }
    Some(at.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn moving() -> Value {
        json!({"symbol": "BTCUSDT", "stats": [
            {"window": "30s", "avg_price": 10.5, "std_price": 1.0},
            {"window": "1m", "avg_price": 11.5, "std_price": 2.0}]})
    }

    #[test]
    fn field_paths_select_keys_indices_and_labelled_array_elements() {
        let v = moving();
        let get = |p: &str| lookup(&v, &parse_path(p).unwrap());
        assert_eq!(get("symbol"), Some(json!("BTCUSDT")));
        assert_eq!(get("stats[1].avg_price"), Some(json!(11.5)));
        assert_eq!(get("stats.0.std_price"), Some(json!(1.0)));
        assert_eq!(get("stats[1m].std_price"), Some(json!(2.0)));
        assert_eq!(get("stats[5m].avg_price"), None);
        assert_eq!(get("missing.field"), None);
    }

    #[test]
    fn malformed_field_paths_are_refused_with_the_path() {
        for bad in ["", "a..b", "a[", "a[]", ".a"] {
            let error = parse_path(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn lines_show_only_the_chosen_fields() {
        let record = TapRecord {
            seq: 7,
            timestamp_ms: Some(1_746_631_831_891),
            key: Some("BTCUSDT".into()),
            value: moving(),
            truncated: false,
        };
        let fields = vec![(
            "stats[30s].avg_price".to_string(),
            parse_path("stats[30s].avg_price").unwrap(),
        )];
        let line: Value = serde_json::from_str(&json_line("t", &record, &fields)).unwrap();
        assert_eq!(line["value"], json!({"stats[30s].avg_price": 10.5}));
        assert_eq!(line["seq"], 7);
        let row = table_line("t", &record, &fields);
        assert!(row.starts_with("15:30:31.891  t "), "{row}");
        assert!(row.ends_with("BTCUSDT     10.5"), "{row}");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
