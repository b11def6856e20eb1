//! The join key of `zscore`: a symbol, with its JSON string literal computed once so
//! every output record copies it instead of escaping it again.

use std::{borrow::Borrow, hash::Hash};

use framework::json::write_string as write_json_string;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A join key: the symbol, with its JSON string literal computed once.
#[derive(Debug, Clone)]
pub(crate) struct Symbol {
    pub(crate) name: Box<str>,
    pub(crate) json: Box<[u8]>,
}

impl From<&str> for Symbol {
    fn from(name: &str) -> Self {
        let mut json = Vec::with_capacity(name.len() + 2);
        write_json_string(&mut json, name);
        Symbol {
            name: name.into(),
            json: json.into(),
        }
    }
}

impl Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        &self.name
    }
}

// Identity is the name alone (as `Borrow<str>` requires).
impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Symbol {}
impl Hash for Symbol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}
impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Symbol {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}
impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}
impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(Symbol::from(name.as_ref()))
    }
}
