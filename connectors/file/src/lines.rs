//! Reads lines with a bound on their length, so a file without newlines (or a hostile
//! one) can never make the source buffer it whole.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its `\n` / `\r\n`), in `buf`; `bytes` counts the newline.
    Complete { bytes: u64 },
    /// Longer than the limit: `buf` holds its first `limit` bytes, the rest was skipped.
    TooLong { bytes: u64 },
}

/// Reads the next line into `buf` (cleared first), keeping at most `limit` bytes of it.
/// Returns `None` at the end of the input.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let mut total: u64 = 0;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let (chunk, found, used) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true, i + 1),
            None => (available, false, available.len()),
        };
        let room = limit.saturating_sub(buf.len());
        if chunk.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += used as u64;
        reader.consume(used);
        if found {
            break;
        }
    }
    if too_long {
        return Ok(Some(Line::TooLong { bytes: total }));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(Line::Complete { bytes: total }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], limit: usize) -> Vec<(Vec<u8>, Line)> {
        // A tiny buffer makes lines span many fills.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, &mut buf, limit).await.unwrap() {
            out.push((buf.clone(), line));
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_newlines() {
        let out = all(b"ab\r\ncd\n\nef", 10).await;
        assert_eq!(
            out,
            vec![
                (b"ab".to_vec(), Line::Complete { bytes: 4 }),
                (b"cd".to_vec(), Line::Complete { bytes: 3 }),
                (b"".to_vec(), Line::Complete { bytes: 1 }),
                (b"ef".to_vec(), Line::Complete { bytes: 2 }),
            ]
        );
    }

    #[tokio::test]
    async fn over_long_lines_keep_only_the_limit_and_the_next_line_is_intact() {
        let out = all(b"0123456789abc\nok\n", 5).await;
        assert_eq!(
            out,
            vec![
                (b"01234".to_vec(), Line::TooLong { bytes: 14 }),
                (b"ok".to_vec(), Line::Complete { bytes: 3 }),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_accepted() {
        let out = all(b"12345\n", 5).await;
        assert_eq!(out, vec![(b"12345".to_vec(), Line::Complete { bytes: 6 })]);
    }
}
