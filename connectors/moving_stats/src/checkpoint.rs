//! The small JSON state stored with every offset commit:
//!
//! ```json
//! {"version":1,"next_offset":1234,"watermarks":{"BTCUSDT":1746631850000,"ETHUSDT":"+inf"}}
//! ```
//!
//! `watermarks` holds each symbol's watermark `W_c` (max event time - lateness; `"+inf"`
//! once its input ended), `next_offset` the offset after the last record processed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;
const PLUS_INFINITY: &str = "+inf";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("unreadable moving_stats checkpoint {text:?}: {source}")]
    Json {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("moving_stats checkpoint version {found} is not supported (expected {VERSION})")]
    Version { found: u32 },
    #[error("moving_stats checkpoint: watermark of {symbol:?} is {text:?}, expected a number or \"{PLUS_INFINITY}\"")]
    Watermark { symbol: String, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Offset after the last processed record, when any was processed.
    pub next_offset: Option<i64>,
    /// Per symbol: the watermark in epoch ms, `i64::MAX` for plus infinity.
    pub watermarks: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WatermarkText {
    Millis(i64),
    Sentinel(String),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_offset: Option<i64>,
    watermarks: BTreeMap<String, WatermarkText>,
}

impl Checkpoint {
    pub fn to_json(&self) -> String {
        let stored = Stored {
            version: VERSION,
            next_offset: self.next_offset,
            watermarks: self
                .watermarks
                .iter()
                .map(|(k, &w)| {
                    let w = if w == i64::MAX {
                        WatermarkText::Sentinel(PLUS_INFINITY.into())
                    } else {
                        WatermarkText::Millis(w)
                    };
                    (k.clone(), w)
                })
                .collect(),
        };
        // Serializing strings and integers into a String cannot fail; an empty object
        // would only mean "nothing to rebuild", which stays safe.
        serde_json::to_string(&stored).unwrap_or_else(|_| String::from("{}"))
    }

    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        let stored: Stored =
            serde_json::from_str(text).map_err(|source| CheckpointError::Json {
                text: text.chars().take(200).collect(),
                source,
            })?;
        if stored.version != VERSION {
            return Err(CheckpointError::Version {
                found: stored.version,
            });
        }
        let mut watermarks = BTreeMap::new();
        for (symbol, w) in stored.watermarks {
            let millis = match w {
                WatermarkText::Millis(ms) => ms,
                WatermarkText::Sentinel(s) if s == PLUS_INFINITY => i64::MAX,
                WatermarkText::Sentinel(text) => {
                    return Err(CheckpointError::Watermark { symbol, text })
                }
            };
            watermarks.insert(symbol, millis);
        }
        Ok(Checkpoint {
            next_offset: stored.next_offset,
            watermarks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_plus_infinity_sentinel() {
        let cp = Checkpoint {
            next_offset: Some(42),
            watermarks: [("A".to_string(), -5), ("B".to_string(), i64::MAX)]
                .into_iter()
                .collect(),
        };
        let json = cp.to_json();
        assert_eq!(
            json,
            r#"{"version":1,"next_offset":42,"watermarks":{"A":-5,"B":"+inf"}}"#
        );
        assert_eq!(Checkpoint::from_json(&json).unwrap(), cp);
    }

    #[test]
    fn rejects_garbage_other_versions_and_unknown_sentinels() {
        assert!(matches!(
            Checkpoint::from_json("nope"),
            Err(CheckpointError::Json { .. })
        ));
        assert!(matches!(
            Checkpoint::from_json(r#"{"version":2,"watermarks":{}}"#),
            Err(CheckpointError::Version { found: 2 })
        ));
        assert!(matches!(
            Checkpoint::from_json(r#"{"version":1,"watermarks":{"A":"-inf"}}"#),
            Err(CheckpointError::Watermark { .. })
        ));
    }
}
