//! JSON-lines files: a bounded `file_source` that replays a file into a topic and then
//! signals end of input, and a `file_sink` that appends records as lines.
//!
//! Together they give every pipeline a way to be tested offline and replayed
//! deterministically.

mod lines;
mod sink;
mod source;

pub use sink::{FileSink, FileSinkConfig};
pub use source::{FileSource, FileSourceConfig};
