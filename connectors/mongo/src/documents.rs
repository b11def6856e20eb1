//! From one JSON record to the documents it becomes: explode, merge, collection name,
//! key filter, dates and numbers. Pure (no I/O), so every rule is unit-tested here.
//!
//! * **explode**: with `explode: f`, each element of the array `f` (an object) makes one
//!   document: the record's other fields merged with the element's. A field in both the
//!   element and the record takes the element's value. Without `explode`, one document
//!   per record.
//! * **field order**: the record's fields up to and including its last `key` field, then
//!   the element's fields, then the record's remaining fields (the identifying fields lead
//!   the document; for `pipelines/btcusdt.yaml` this is exactly the historic order
//!   `timestamp, symbol, window, zscore_price, price`). When no record field is a key
//!   field, the element's fields take the place of the exploded array.
//! * **types**: JSON integers that fit an i64 become Int64, other numbers Double; strings,
//!   booleans, null, arrays and objects map to their BSON counterparts; `date_fields`
//!   (ISO 8601 strings) become BSON Dates with millisecond precision.
//! * **`_id`**: never written by the sink: MongoDB assigns an ObjectId on insert and keeps
//!   it when a re-delivered record replaces the document. A record carrying `_id` is
//!   refused (`reserved_field`): a replacement cannot change `_id`.

use framework::event_time::parse_millis;
use mongodb::bson::{Bson, DateTime, Document};
use serde_json::{Map, Value};

use crate::template::{RenderError, Template};

/// Stable reason labels of per-record rejections (metric label and dead-letter header).
pub mod reason {
    /// The payload is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// The payload is JSON but not an object.
    pub const NOT_AN_OBJECT: &str = "not_an_object";
    /// The `explode` field is missing, not an array, or holds a non-object element.
    pub const BAD_EXPLODE: &str = "bad_explode";
    /// A `{field}` of the collection template is missing from the document.
    pub const MISSING_TEMPLATE_FIELD: &str = "missing_template_field";
    /// The template's values make an invalid collection name (empty, null, object,
    /// `$`, NUL, `system.`, namespace over 255 bytes).
    pub const INVALID_COLLECTION: &str = "invalid_collection";
    /// A `key` field is missing (or null) in the document.
    pub const MISSING_KEY_FIELD: &str = "missing_key_field";
    /// A `date_fields` field is missing or not a valid ISO 8601 string.
    pub const BAD_DATE: &str = "bad_date";
    /// The document carries `_id`, which MongoDB owns.
    pub const RESERVED_FIELD: &str = "reserved_field";
    /// A document over MongoDB's 16 MiB limit.
    pub const TOO_LARGE: &str = "too_large";
    /// The record would create a collection beyond `max_collections`.
    pub const TOO_MANY_COLLECTIONS: &str = "too_many_collections";
    /// The server refused the document (or its collection) for good.
    pub const WRITE_ERROR: &str = "write_error";
}

/// Why a record cannot be written (`reason` is one of [`reason`]): the refusal type shared
/// by every record format.
pub use framework::formats::Refusal;
use framework::json::kind;

/// How records become documents (the document-shaping part of the config).
#[derive(Debug, Clone)]
pub struct Layout {
    pub collection: Template,
    pub explode: Option<String>,
    pub key: Vec<String>,
    pub date_fields: Vec<String>,
}

/// One document to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Rendered collection name (checked against MongoDB's rules by the planner).
    pub collection: String,
    /// `{key field: value, ...}` in `key` order: the upsert filter.
    pub filter: Document,
    pub document: Document,
}

/// Largest BSON document the server accepts.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// BSON is at most ~9 times larger than the JSON it comes from (an array element `1,` of
/// 2 bytes becomes 17); payloads below this cannot make a document over the limit, so
/// only larger ones pay for measuring.
const UNMEASURED_PAYLOAD_BYTES: usize = MAX_DOCUMENT_BYTES / 10;

impl Layout {
    /// The documents of one record, or why none of them can be written (a record is
    /// written whole or rejected whole).
    pub fn documents(&self, payload: &[u8]) -> Result<Vec<Planned>, Refusal> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| Refusal::new(reason::MALFORMED_JSON, format!("not valid JSON: {e}")))?;
        let Value::Object(record) = value else {
            return Err(Refusal::new(
                reason::NOT_AN_OBJECT,
                format!("record must be a JSON object, got {}", kind(&value)),
            ));
        };
        let measure = payload.len() > UNMEASURED_PAYLOAD_BYTES;
        let Some(explode) = &self.explode else {
            return Ok(vec![self.planned(record, measure)?]);
        };
        let elements = match record.get(explode) {
            Some(Value::Array(elements)) => elements,
            Some(other) => {
                return Err(Refusal::new(
                    reason::BAD_EXPLODE,
                    format!("field `{explode}` must be an array, got {}", kind(other)),
                ))
            }
            None => {
                return Err(Refusal::new(
                    reason::BAD_EXPLODE,
                    format!("field `{explode}` (explode) is missing"),
                ))
            }
        };
        // Element fields go after the record's last key field (see the module docs).
        let split = record
            .keys()
            .rposition(|name| self.key.contains(name))
            .map(|position| position + 1)
            .or_else(|| record.keys().position(|name| name == explode))
            .unwrap_or(record.len());
        let mut documents = Vec::with_capacity(elements.len());
        for (i, element) in elements.iter().enumerate() {
            let Value::Object(element) = element else {
                return Err(Refusal::new(
                    reason::BAD_EXPLODE,
                    format!("`{explode}[{i}]` must be an object, got {}", kind(element)),
                ));
            };
            let mut merged = Map::with_capacity(record.len() + element.len());
            for (position, (name, value)) in record.iter().enumerate() {
                if position == split {
                    merged.extend(element.iter().map(|(n, v)| (n.clone(), v.clone())));
                }
                if name != explode && !element.contains_key(name) {
                    merged.insert(name.clone(), value.clone());
                }
            }
            if split >= record.len() {
                merged.extend(element.iter().map(|(n, v)| (n.clone(), v.clone())));
            }
            documents.push(
                self.planned(merged, measure).map_err(|e| {
                    Refusal::new(e.reason, format!("`{explode}[{i}]`: {}", e.detail))
                })?,
            );
        }
        Ok(documents)
    }

    /// Collection, filter and BSON document of one merged JSON object.
    fn planned(&self, fields: Map<String, Value>, measure: bool) -> Result<Planned, Refusal> {
        if fields.contains_key("_id") {
            return Err(Refusal::new(
                reason::RESERVED_FIELD,
                "field `_id` is assigned by MongoDB and cannot come from a record",
            ));
        }
        let collection = self.collection.render(&fields).map_err(|e| match e {
            RenderError::Missing(field) => Refusal::new(
                reason::MISSING_TEMPLATE_FIELD,
                format!("collection template field `{field}` is missing"),
            ),
            RenderError::Unusable { field, problem } => Refusal::new(
                reason::INVALID_COLLECTION,
                format!("collection template field `{field}` {problem}"),
            ),
        })?;
        let mut document = Document::new();
        for (name, value) in fields {
            let bson = if self.date_fields.contains(&name) {
                date(&name, &value)?
            } else {
                to_bson(value)
            };
            document.insert(name, bson);
        }
        for name in &self.date_fields {
            if !document.contains_key(name) {
                return Err(Refusal::new(
                    reason::BAD_DATE,
                    format!("date field `{name}` is missing"),
                ));
            }
        }
        let mut filter = Document::new();
        for name in &self.key {
            match document.get(name) {
                Some(value) if *value != Bson::Null => {
                    filter.insert(name.clone(), value.clone());
                }
                _ => {
                    return Err(Refusal::new(
                        reason::MISSING_KEY_FIELD,
                        format!("key field `{name}` is missing or null"),
                    ))
                }
            }
        }
        if measure {
            let size = mongodb::bson::to_vec(&document).map_or(usize::MAX, |bytes| bytes.len());
            if size > MAX_DOCUMENT_BYTES {
                return Err(Refusal::new(
                    reason::TOO_LARGE,
                    format!(
                        "a document of {size} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit"
                    ),
                ));
            }
        }
        Ok(Planned {
            collection,
            filter,
            document,
        })
    }
}

/// A date field's value as a BSON Date.
fn date(name: &str, value: &Value) -> Result<Bson, Refusal> {
    let text = value.as_str().ok_or_else(|| {
        Refusal::new(
            reason::BAD_DATE,
            format!(
                "date field `{name}` must be an ISO 8601 string, got {}",
                kind(value)
            ),
        )
    })?;
    let millis = parse_millis(text).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        Refusal::new(
            reason::BAD_DATE,
            format!("date field `{name}` = {shown:?} is not an ISO 8601 timestamp: {e}"),
        )
    })?;
    Ok(Bson::DateTime(DateTime::from_millis(millis)))
}

/// JSON to BSON: integers that fit an i64 are Int64, every other number a Double.
pub fn to_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            // `as_f64` is total for numbers serde_json parsed (u64 beyond i64, floats).
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s),
        Value::Array(items) => Bson::Array(items.into_iter().map(to_bson).collect()),
        Value::Object(fields) => Bson::Document(
            fields
                .into_iter()
                .map(|(name, value)| (name, to_bson(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
#[path = "documents_tests.rs"]
mod tests;
