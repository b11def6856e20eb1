//! Field paths (`symbol`, `data.p`) and reading the values they name out of a JSON record
//! in one pass, without building a `serde_json::Value`: flat records of plain values by
//! hand ([`flat`]), everything else through serde_json.

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

mod flat;

/// Longest field path.
pub const MAX_PATH_LEN: usize = 256;
/// Most segments of a field path.
pub const MAX_PATH_DEPTH: usize = 8;

/// A dotted path into nested JSON objects: `price`, or `data.p` for `{"data":{"p":..}}`.
/// Segments are non-empty and hold no `.` (a key containing a dot cannot be named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Checks the syntax; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path must not be empty".into());
        }
        if text.len() > MAX_PATH_LEN {
            return Err(format!(
                "a field path must be at most {MAX_PATH_LEN} bytes, got {}",
                text.len()
            ));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "field path {text:?} contains whitespace or a control character"
            ));
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "field path {text:?} has an empty segment: write `a.b`, without leading, \
                 trailing or doubled dots"
            ));
        }
        if segments.len() > MAX_PATH_DEPTH {
            return Err(format!(
                "field path {text:?} has {} segments; at most {MAX_PATH_DEPTH} are supported",
                segments.len()
            ));
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The last segment: the name derived output fields use (`data.p` gives `p`).
    pub fn name(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether one path lies inside the other (or they are equal): both cannot be read.
    pub fn overlaps(&self, other: &FieldPath) -> bool {
        self.segments
            .iter()
            .zip(&other.segments)
            .all(|(a, b)| a == b)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads the raw JSON text of `N` field paths from records, in one pass.
#[derive(Debug, Clone)]
pub struct FieldReader<const N: usize> {
    root: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: Box<str>,
    /// The name as words, for the flat reader.
    short: Option<flat::Name>,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(usize),
    Branch(Vec<Entry>),
}

impl<const N: usize> FieldReader<N> {
    /// Fails when two paths overlap (one lies inside the other).
    pub fn new(paths: [&FieldPath; N]) -> Result<Self, String> {
        for (i, a) in paths.iter().enumerate() {
            if let Some(b) = paths[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(format!("field paths `{a}` and `{b}` overlap"));
            }
        }
        let mut root = Vec::new();
        for (slot, path) in paths.iter().enumerate() {
            let mut level = &mut root;
            let (last, parents) = match path.segments.split_last() {
                Some(split) => split,
                None => return Err("a field path must not be empty".into()),
            };
            for segment in parents {
                let at = match level.iter().position(|e: &Entry| &*e.name == segment) {
                    Some(at) => at,
                    None => {
                        level.push(Entry {
                            name: segment.as_str().into(),
                            short: flat::Name::of(segment.as_bytes()),
                            node: Node::Branch(Vec::new()),
                        });
                        level.len() - 1
                    }
                };
                level = match &mut level[at].node {
                    Node::Branch(children) => children,
                    Node::Leaf(_) => return Err(format!("field path `{path}` overlaps another")),
                };
            }
            level.push(Entry {
                name: last.as_str().into(),
                short: flat::Name::of(last.as_bytes()),
                node: Node::Leaf(slot),
            });
        }
        Ok(FieldReader { root })
    }

    /// The raw JSON text of each path's value, `None` where a path is missing (or crosses
    /// a value that is not an object). Fails on invalid JSON, a record that is not an
    /// object, and a duplicated key on a path.
    pub fn read<'a>(
        &self,
        payload: &'a [u8],
    ) -> Result<[Option<&'a RawValue>; N], serde_json::Error> {
        let mut slots = [None; N];
        let mut deserializer = serde_json::Deserializer::from_slice(payload);
        ObjectSeed {
            entries: &self.root,
            slots: &mut slots,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(slots)
    }

    /// [`read`](Self::read) and [`classify`] in one, without serde_json for a flat record
    /// of plain values (the usual one); the same result and the same errors either way.
    pub fn read_scalars<'a>(
        &self,
        payload: &'a [u8],
    ) -> Result<[Option<Scalar<'a>>; N], serde_json::Error> {
        if let Some(scalars) = flat::read(&self.root, payload) {
            return Ok(scalars);
        }
        Ok(self.read(payload)?.map(|raw| raw.map(classify)))
    }
}

struct ObjectSeed<'r, 's, 'a> {
    entries: &'r [Entry],
    slots: &'s mut [Option<&'a RawValue>],
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.entries.iter().find(|e| *e.name == *key) {
                Some(Entry {
                    node: Node::Leaf(slot),
                    ..
                }) => {
                    let raw: &'de RawValue = map.next_value()?;
                    match self.slots.get_mut(*slot) {
                        Some(Some(_)) => {
                            return Err(de::Error::custom(format!("duplicate field `{key}`")))
                        }
                        Some(empty) => *empty = Some(raw),
                        None => {}
                    }
                }
                Some(Entry {
                    node: Node::Branch(children),
                    ..
                }) => {
                    let raw: &'de RawValue = map.next_value()?;
                    let text: &'de str = raw.get();
                    // Not an object: the paths below it are missing.
                    if text.starts_with('{') {
                        let mut nested = serde_json::Deserializer::from_str(text);
                        ObjectSeed {
                            entries: children,
                            slots: &mut *self.slots,
                        }
                        .deserialize(&mut nested)
                        .map_err(de::Error::custom)?;
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON value classified by kind, strings unescaped (borrowed when they hold no escape).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// The number's text, as written.
    Number(&'a str),
    /// Anything else: "null", "a boolean", "an array", "an object".
    Other(&'static str),
}

impl Scalar<'_> {
    /// "a string", "a number"...: for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Number(_) => "a number",
            Scalar::Other(kind) => kind,
        }
    }
}

/// Classifies a value read by [`FieldReader::read`] (valid JSON by construction).
pub fn classify(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get().trim_ascii();
    match text.as_bytes().first() {
        Some(b'"') => {
            let inner = &text[1..text.len().saturating_sub(1).max(1)];
            if inner.contains('\\') {
                match serde_json::from_str::<String>(text) {
                    Ok(s) => Scalar::Str(Cow::Owned(s)),
                    Err(_) => Scalar::Other("an invalid string"),
                }
            } else {
                Scalar::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'-' | b'0'..=b'9') => Scalar::Number(text),
        Some(b't' | b'f') => Scalar::Other("a boolean"),
        Some(b'[') => Scalar::Other("an array"),
        Some(b'{') => Scalar::Other("an object"),
        _ => Scalar::Other("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        FieldPath::parse(text).unwrap()
    }

    #[test]
    fn paths_are_checked_and_named_by_their_last_segment() {
        assert_eq!(path("data.p").name(), "p");
        assert_eq!(path("price").name(), "price");
        for bad in ["", ".p", "p.", "a..b", "a b", "a\tb"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        let deepest = format!("{}b", "a.".repeat(MAX_PATH_DEPTH - 1));
        assert!(FieldPath::parse(&deepest).is_ok());
        assert!(FieldPath::parse(&format!("a.{deepest}")).is_err());
        assert!(FieldPath::parse(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn reads_top_level_and_nested_values_in_one_pass() {
        let (s, p, t) = (path("data.s"), path("data.p"), path("T"));
        let reader = FieldReader::new([&s, &p, &t]).unwrap();
        let payload =
            br#"{"stream":"x","data":{"e":"trade","s":"BTCUSDT","p":"97000.01","q":[1]},"T":17}"#;
        let [s, p, t] = reader.read(payload).unwrap();
        assert_eq!(classify(s.unwrap()), Scalar::Str(Cow::Borrowed("BTCUSDT")));
        assert_eq!(classify(p.unwrap()), Scalar::Str(Cow::Borrowed("97000.01")));
        assert_eq!(classify(t.unwrap()), Scalar::Number("17"));
    }

    #[test]
    fn missing_paths_are_none_and_bad_records_fail() {
        let (s, p) = (path("data.s"), path("v"));
        let reader = FieldReader::new([&s, &p]).unwrap();
        let [s, v] = reader.read(br#"{"data":"flat","v":null}"#).unwrap();
        assert!(s.is_none());
        assert_eq!(classify(v.unwrap()), Scalar::Other("null"));
        for bad in [
            &b"[1]"[..],
            b"{",
            b"{\"v\":1} x",
            b"{\"v\":1,\"v\":2}",
            b"7",
        ] {
            assert!(
                reader.read(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let k = path("k");
        let reader = FieldReader::new([&k]).unwrap();
        let [k] = reader.read(br#"{"k":"A\"B"}"#).unwrap();
        assert_eq!(classify(k.unwrap()), Scalar::Str(Cow::Owned("A\"B".into())));
    }

    #[test]
    fn overlapping_paths_are_refused() {
        let (a, ab) = (path("a"), path("a.b"));
        assert!(FieldReader::new([&a, &ab]).is_err());
        assert!(FieldReader::new([&a, &a]).is_err());
    }
}
