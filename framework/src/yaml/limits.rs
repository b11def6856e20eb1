//! A bound on what a pipeline file may expand to. YAML aliases let a few kilobytes name
//! billions of nodes ("billion laughs"); the expanded size is computed here from parser
//! events, without expanding anything, before any value is built.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, Parser},
    scanner::Marker,
};

use super::{Position, SyntaxError};

/// Most nodes (scalars, sequences, mappings) a document may expand to; pipeline files
/// have hundreds.
pub const MAX_NODES: u64 = 100_000;
/// Most bytes of scalar text a document may expand to.
pub const MAX_SCALAR_BYTES: u64 = 8 * 1024 * 1024;
/// Deepest nesting of sequences and mappings (recursive loaders overflow their stack on
/// a file of 100000 `[`).
pub const MAX_DEPTH: usize = 100;

#[derive(Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

#[derive(Default)]
struct Budget {
    total: Size,
    /// Open collections with an anchor: (anchor id, total when they started).
    open: Vec<(usize, Size)>,
    /// Expanded size of each anchored node.
    anchors: HashMap<usize, Size>,
    depth: usize,
    exceeded: Option<(Marker, String)>,
}

impl Budget {
    fn count(&mut self, size: Size, mark: Marker) {
        self.total.add(size);
        if self.exceeded.is_none()
            && (self.total.nodes > MAX_NODES || self.total.bytes > MAX_SCALAR_BYTES)
        {
            self.exceeded = Some((mark, format!(
                "the document is too large once its aliases are expanded (more than {MAX_NODES} nodes or {} MiB of text): pipeline files may not expand beyond that",
                MAX_SCALAR_BYTES / (1024 * 1024)
            )));
        }
    }
}

impl Budget {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, _, anchor, _) => {
                let size = Size {
                    nodes: 1,
                    bytes: text.len() as u64,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, size);
                }
                self.count(size, mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.count(Size { nodes: 1, bytes: 0 }, mark);
                self.depth += 1;
                if self.depth > MAX_DEPTH && self.exceeded.is_none() {
                    self.exceeded = Some((
                        mark,
                        format!("the document nests more than {MAX_DEPTH} levels deep"),
                    ));
                }
                // The start node itself belongs to the anchored subtree.
                let mut before = self.total;
                before.nodes -= 1;
                self.open.push((anchor, before));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.depth = self.depth.saturating_sub(1);
                if let Some((anchor, before)) = self.open.pop() {
                    if anchor > 0 {
                        let size = Size {
                            nodes: self.total.nodes - before.nodes,
                            bytes: self.total.bytes - before.bytes,
                        };
                        self.anchors.insert(anchor, size);
                    }
                }
            }
            Event::Alias(anchor) => {
                // An unknown anchor is a syntax error that serde_yaml reports.
                let size = self.anchors.get(&anchor).copied().unwrap_or_default();
                self.count(size, mark);
            }
            _ => {}
        }
    }
}

/// Largest pipeline file read; a pipeline file is a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a pipeline file of at most [`MAX_FILE_BYTES`], without reading more of a larger
/// one.
pub fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "the file is larger than {} MiB, too large for a pipeline file",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    Ok(text)
}

/// Rejects deep nesting before any YAML parser sees it: both parsers check every open
/// flow collection at each token, so 100000 `[` take them minutes. Counts brackets
/// without regard to quoting (a pipeline file never holds 100 unclosed brackets in its
/// strings) and compact sequences (`- - - x`).
fn nesting(text: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    for (line_index, line) in text.lines().enumerate() {
        let too_deep = |column: usize| SyntaxError {
            position: Position {
                line: line_index + 1,
                column: column + 1,
            },
            message: format!("the document nests more than {MAX_DEPTH} levels deep"),
        };
        let mut dashes = 0usize;
        let mut rest = line.trim_start();
        while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
            dashes += 1;
            rest = after.trim_start();
        }
        if dashes > MAX_DEPTH {
            return Err(too_deep(0));
        }
        for (column, c) in line.char_indices() {
            match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(too_deep(column));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Rejects a document whose aliases expand beyond [`MAX_NODES`] or [`MAX_SCALAR_BYTES`],
/// pointing at the node where the limit was crossed. Syntax errors are left to the
/// loader, which reports them with more context.
pub fn check(text: &str) -> Result<(), SyntaxError> {
    nesting(text)?;
    let mut budget = Budget::default();
    let mut parser = Parser::new_from_str(text);
    // Event by event: `Parser::load` recurses once per nesting level.
    while budget.exceeded.is_none() {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) | Err(_) => break,
            Ok((event, mark)) => budget.on_event(event, mark),
        }
    }
    match budget.exceeded {
        None => Ok(()),
        Some((mark, message)) => Err(SyntaxError {
            position: Position {
                line: mark.line(),
                column: mark.col() + 1,
            },
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` of mappings, each naming the previous one `fan` times: `fan^levels` nodes.
    pub fn alias_bomb(levels: usize, fan: usize) -> String {
        let mut text = String::from("a0: &a0 [x, y, z, w, v, u, t, s, r, q]\n");
        for level in 1..=levels {
            let refs: Vec<String> = (0..fan).map(|_| format!("*a{}", level - 1)).collect();
            text.push_str(&format!("a{level}: &a{level} [{}]\n", refs.join(", ")));
        }
        text
    }

    #[test]
    fn nested_aliases_beyond_the_node_budget_are_rejected_where_the_limit_is_crossed() {
        let err = check(&alias_bomb(9, 10)).unwrap_err();
        assert!(err
            .message
            .contains("too large once its aliases are expanded"));
        assert!(err.position.line > 1, "{:?}", err.position);
    }

    #[test]
    fn modest_aliases_and_plain_documents_pass() {
        assert_eq!(check(&alias_bomb(2, 10)), Ok(()));
        let shared = "base: &base { brokers: x, partitions: 3 }\nstages:\n".to_string()
            + &"  - { <<: *base, name: s }\n".repeat(200);
        assert_eq!(check(&shared), Ok(()));
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        for depth in [150, 100_000] {
            let text = format!("x: {}{}\n", "[".repeat(depth), "]".repeat(depth));
            let err = super::super::load(&text).unwrap_err();
            assert!(
                err.message.contains("nests more than 100"),
                "{}",
                err.message
            );
            let text = format!("x:\n{}1\n", "- ".repeat(depth));
            let err = super::super::load(&text).unwrap_err();
            assert!(
                err.message.contains("nests more than 100"),
                "{}",
                err.message
            );
        }
        let text = format!("x: {}1{}\n", "[".repeat(120), "]".repeat(120));
        let err = check(&text).unwrap_err();
        assert!(
            err.message.contains("nests more than 100"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_long_scalar_repeated_by_aliases_is_bounded_by_bytes() {
        let long = "x".repeat(100_000);
        let text = format!("a: &a {long}\nb: [{}]\n", vec!["*a"; 100].join(", "));
        assert!(check(&text).is_err());
    }
}
