//! The record formats of the built-in statistics pipeline, one module per format family:
//! each owns its record type constant, its field contract (field names derived from the
//! stage's config), one parser and one writer; [`Refusal`] is their shared refusal type.
//!
//! Why a framework module rather than a crate: every connector already depends on the
//! framework, and the formats need its event-time and JSON helpers, so a module adds no
//! crate to the build graph and no version to keep in step.
//!
//! * [`price`]: value records (`{"symbol","price","timestamp"}` by default, any field
//!   paths), read by `moving_stats` and `zscore` with the same parser.
//! * [`moving_stats`]: per-window statistics (`avg_<value>`, `std_<value>`).
//! * [`zscore`]: z-scores of values against those statistics (`zscore_<value>`).

pub mod decimal;
pub mod fields;
pub mod mapping;
pub mod moving_stats;
pub mod price;
pub mod zscore;

pub use mapping::FieldMapping;

use crate::RecordType;

/// Records of a value per key and time (`btc-price`).
pub const PRICE: RecordType = RecordType("price");
/// Records of moving statistics (`btc-price-moving`).
pub const MOVING_STATS: RecordType = RecordType("moving-stats");
/// Records of z-scores (`btc-price-zscore`).
pub const ZSCORE: RecordType = RecordType("zscore");

/// Output attribute naming the slide of a statistics writer, so that its readers can
/// check theirs against it.
pub const SLIDE_ATTRIBUTE: &str = "slide";

/// The default slide of the statistics family (`moving_stats` writes at it, `zscore`
/// reads at it: one default so that the two agree unless configured).
pub fn default_slide() -> crate::DurationSpec {
    crate::DurationSpec::from_secs(1)
}

/// The default allowed lateness of the statistics family's stages.
pub fn default_lateness() -> crate::DurationSpec {
    crate::DurationSpec::from_secs(10)
}
/// Output attribute naming the value (last segment of `value_field`) a statistics writer
/// derives its `avg_`/`std_` names from.
pub const VALUE_ATTRIBUTE: &str = "value";
/// Output attribute naming the key field a statistics writer writes.
pub const KEY_ATTRIBUTE: &str = "key";

/// Why an input record was refused: a stable metric label and details for the dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// Appends a JSON number the way serde_json prints an `f64` (shortest round trip), or
/// `null` if it is not finite (valid JSON either way).
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `"name":` as JSON, preceded by a comma: the pre-rendered head of a field.
fn field_head(name: &str) -> Vec<u8> {
    let mut head = b",".to_vec();
    crate::json::write_string(&mut head, name);
    head.push(b':');
    head
}
