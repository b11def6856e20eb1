//! The fast path of [`FieldReader::read_scalars`](super::FieldReader::read_scalars): one
//! pass over a record that is a flat JSON object of plain values (strings without escapes,
//! numbers, `true`, `false`, `null`), without allocating. Anything else (a nested object
//! or array, an escape, a path below the top level, a duplicate, invalid JSON or UTF-8)
//! returns `None` and serde_json reads the record, so errors and unusual input are always
//! its. The property test in `tests` checks that both agree wherever this one answers.

use std::borrow::Cow;

use super::{Entry, Node, Scalar};

/// The value at each path, classified as [`super::classify`] does, or `None`: let
/// serde_json decide.
pub(super) fn read<'a, const N: usize>(
    root: &[Entry],
    payload: &'a [u8],
) -> Option<[Option<Scalar<'a>>; N]> {
    // One check of the whole record, after which every slice of it is text.
    let text = std::str::from_utf8(payload).ok()?;
    let mut slots = std::array::from_fn(|_| None);
    let mut c = Cursor {
        text,
        bytes: payload,
        at: 0,
    };
    c.skip_whitespace();
    c.expect(b'{')?;
    c.skip_whitespace();
    if c.peek() == Some(b'}') {
        c.at += 1;
    } else {
        loop {
            let key = c.string()?;
            let name = Name::at(payload, c.at - 1 - key.len(), key.len());
            c.skip_whitespace();
            c.expect(b':')?;
            c.skip_whitespace();
            let value = c.scalar()?;
            let entry = match name {
                Some(name) => root.iter().find(|e| e.short == Some(name)),
                None => root.iter().find(|e| *e.name == *key),
            };
            match entry {
                Some(Entry {
                    node: Node::Leaf(slot),
                    ..
                }) => match slots.get_mut(*slot) {
                    Some(slot @ None) => *slot = Some(value),
                    // A duplicate: serde_json words the error.
                    _ => return None,
                },
                Some(_) => return None,
                None => {}
            }
            c.skip_whitespace();
            match c.next()? {
                b',' => c.skip_whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.skip_whitespace();
    (c.at == payload.len()).then_some(slots)
}

/// A field name of up to 16 bytes as two words (its first and last 8 bytes, zero-padded),
/// so that the names in a record compare without calls to `memcmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Name {
    len: usize,
    words: [u64; 2],
}

impl Name {
    /// `None` beyond 16 bytes.
    pub(super) fn of(name: &[u8]) -> Option<Name> {
        let mut padded = [0u8; 24];
        padded.get_mut(..name.len())?.copy_from_slice(name);
        Name::at(&padded, 0, name.len())
    }

    /// The name at `bytes[start..start + len]`, read in place; `None` beyond 16 bytes or
    /// when a short one lies too close to the end of `bytes` to be read as a word.
    fn at(bytes: &[u8], start: usize, len: usize) -> Option<Name> {
        let word = |from: usize| {
            let word = bytes.get(from..from.checked_add(8)?)?;
            Some(u64::from_le_bytes(word.try_into().ok()?))
        };
        let words = match len {
            0 => [0, 0],
            1..=8 => [word(start)? & (u64::MAX >> (64 - 8 * len)), 0],
            9..=16 => [word(start)?, word(start + len - 8)?],
            _ => return None,
        };
        Some(Name { len, words })
    }
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's whitespace, as serde_json skips it.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A value that is not an object or an array.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        Some(match self.peek()? {
            b'"' => Scalar::Str(Cow::Borrowed(self.string()?)),
            b'-' | b'0'..=b'9' => Scalar::Number(self.number()?),
            b't' => self.literal("true", "a boolean")?,
            b'f' => self.literal("false", "a boolean")?,
            b'n' => self.literal("null", "null")?,
            _ => return None,
        })
    }

    /// The text of a string without escapes (so it is its value).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = string_end(rest)?;
        // An escape or a control character (an error): serde_json's to handle.
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`: what serde_json accepts.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            // A digit after a leading zero is an error.
            b'0' if self.peek().is_some_and(|b| b.is_ascii_digit()) => return None,
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        self.text.get(start..self.at)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    fn literal(&mut self, word: &str, kind: &'static str) -> Option<Scalar<'a>> {
        if !self.text.get(self.at..)?.starts_with(word) {
            return None;
        }
        self.at += word.len();
        Some(Scalar::Other(kind))
    }
}

/// The index of the first `"`, `\\` or control character (below 0x20), eight bytes at a
/// time: strings are most of a record's bytes.
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = bytes
        .get(at..at + 8)
        .and_then(|c| <[u8; 8]>::try_from(c).ok())
    {
        let word = u64::from_le_bytes(chunk);
        let (quote, backslash) = (word ^ (ONES * 0x22), word ^ (ONES * 0x5c));
        // Flags each zero byte of `quote` and `backslash` and each byte of `word` below
        // 0x20; a borrow can flag bytes after a flagged one, never before, so the lowest
        // flag is exact.
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGH;
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = bytes.get(at..)?;
    let len = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(at + len)
}

#[cfg(test)]
mod tests;
