//! YAML loading with source positions, so every diagnostic can say `line:col`.
//!
//! Values come from `serde_yaml` (correct YAML 1.2 typing); positions come from a second,
//! event-level pass with `yaml-rust2`, keyed by the same field paths the validator uses
//! (`stages[1].config.windows[0]`).

pub mod limits;

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where each node (and each mapping key) of a document is.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Positions {
    /// Position of the value at `path`, or of its nearest ancestor that has one.
    pub fn value(&self, path: &str) -> Position {
        self.lookup(&self.values, path)
    }

    /// Position of the key naming `path` (for "unknown field"), else of its value.
    pub fn key(&self, path: &str) -> Position {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }

    fn lookup(&self, map: &HashMap<String, Position>, path: &str) -> Position {
        let mut current = path;
        loop {
            if let Some(pos) = map.get(current) {
                return *pos;
            }
            match parent_path(current) {
                Some(parent) => current = parent,
                None => return Position { line: 1, column: 1 },
            }
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `` (the root), root → None.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Joins a parent path and a mapping key.
pub fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a parent path and a sequence index.
pub fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
}

/// Parses one YAML document into a JSON value plus the positions of its nodes.
pub fn load(text: &str) -> Result<(serde_json::Value, Positions), SyntaxError> {
    // Before serde_yaml expands any alias.
    crate::yaml::limits::check(text)?;
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let position = e
            .location()
            .map(|l| Position {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or(Position { line: 1, column: 1 });
        // serde_yaml appends " at line X column Y"; the position is shown separately.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        SyntaxError {
            position,
            message: format!("YAML syntax error: {message}"),
        }
    })?;
    let json = yaml_to_json(value).map_err(|message| SyntaxError {
        position: Position { line: 1, column: 1 },
        message,
    })?;
    let mut collector = PositionCollector::default();
    let mut parser = Parser::new_from_str(text);
    // serde_yaml accepted the text, so the event pass only fails on constructs serde_yaml
    // tolerates; positions are then just less precise.
    let _ = parser.load(&mut collector, false);
    Ok((json, collector.positions))
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<serde_json::Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("unsupported number {f}: use a finite number"))?
            }
        }
        Y::String(s) => serde_json::Value::String(s),
        Y::Sequence(items) => serde_json::Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!("unsupported mapping key {other:?}: use a string"))
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

enum Frame {
    Mapping {
        path: String,
        pending_key: Option<String>,
        /// Block mappings are reported at their first key's ':' by the scanner, so the
        /// mapping's own position is taken from its first key instead.
        seen_key: bool,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct PositionCollector {
    stack: Vec<Frame>,
    positions: Positions,
}

impl PositionCollector {
    /// Path of the node that starts now, or `None` when the event is a mapping key.
    fn next_node_path(&mut self, event_scalar: Option<&str>, mark: Marker) -> Option<String> {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next_index }) => {
                let child = child_index(path, *next_index);
                *next_index += 1;
                Some(child)
            }
            Some(Frame::Mapping {
                path,
                pending_key,
                seen_key,
            }) => match pending_key.take() {
                Some(key) => Some(child_key(path, &key)),
                None => {
                    // A key: complex (non-scalar) keys are rare in pipeline files and get
                    // no position of their own.
                    let key = event_scalar.unwrap_or_default().to_string();
                    if !*seen_key {
                        *seen_key = true;
                        self.positions.values.insert(path.clone(), position);
                    }
                    self.positions.keys.insert(child_key(path, &key), position);
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.positions.values.insert(
            path.to_string(),
            Position {
                line: mark.line(),
                column: mark.col() + 1,
            },
        );
    }
}

impl MarkedEventReceiver for PositionCollector {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if let Some(path) = self.next_node_path(Some(&text), mark) {
                    self.record(&path, mark);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_node_path(None, mark) {
                    self.record(&path, mark);
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_node_path(None, mark).unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Mapping {
                    path,
                    pending_key: None,
                    seen_key: false,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_node_path(None, mark).unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Sequence {
                    path,
                    next_index: 0,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nkafka:\n  brokers: localhost:9092\nstages:\n  - name: a\n    config:\n      windows: [30s, 1m]\n";

    #[test]
    fn records_one_based_positions_of_values_and_keys() {
        let (value, positions) = load(DOC).unwrap();
        assert_eq!(value["stages"][0]["name"], "a");
        assert_eq!(positions.value("name"), Position { line: 1, column: 7 });
        assert_eq!(
            positions.key("kafka.brokers"),
            Position { line: 3, column: 3 }
        );
        assert_eq!(
            positions.value("kafka.brokers"),
            Position {
                line: 3,
                column: 12
            }
        );
        assert_eq!(
            positions.value("stages[0]"),
            Position { line: 5, column: 5 }
        );
        assert_eq!(
            positions.value("stages[0].config.windows[1]"),
            Position {
                line: 7,
                column: 22
            }
        );
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let (_, positions) = load(DOC).unwrap();
        assert_eq!(
            positions.value("stages[0].config.missing"),
            Position { line: 7, column: 7 }
        );
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let err = load("name: x\nstages: [\n").unwrap_err();
        assert!(
            err.message.starts_with("YAML syntax error"),
            "{}",
            err.message
        );
        assert!(err.position.line >= 2, "{:?}", err.position);
    }
}
