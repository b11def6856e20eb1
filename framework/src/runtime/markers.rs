//! Control markers: payload-less records that the runtime writes into a topic and that its
//! readers act on instead of handing them to a connector (see docs/semantics.md §8).
//!
//! - End of input: the writer has written everything it will write to this partition.
//! - Progress: the writer will write no record with an event time before `T` to this
//!   partition, so readers may advance their watermarks without waiting for a record.
//!
//! Both carry the writer's identity `stage#part/parts`: a stage that runs as several
//! processes writes one end marker per input partition it finishes (`part` = that
//! partition, `parts` = their count), whichever process owns it. A reader counts an input
//! as ended only when every part of every writer stage seen has ended, so N processes of
//! a stage give the same output as one, and a rebalance or SIGKILL cannot lose a part
//! (its next owner re-reads the upstream marker and writes the part's marker again).

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// End of a bounded input on one partition; the value is the writer stage's name.
pub const EOF_HEADER: &str = "x-pipeline-end-of-input";
/// Progress: the value is `T`, ms since the epoch, in decimal.
pub const PROGRESS_HEADER: &str = "x-pipeline-progress";
/// Who wrote a marker: `stage#part/parts`. End markers without it (written before the
/// header existed) count as `stage#0/1`.
pub const WRITER_HEADER: &str = "x-pipeline-writer";

/// Most parts a writer may declare, and most writer stages tracked per input: a hostile
/// marker cannot make a reader allocate without bound.
const MAX_PARTS: u32 = 1 << 16;
const MAX_WRITERS: usize = 64;

/// One writer of a topic: a stage, or one input partition of a scaled-out stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub stage: String,
    pub part: u32,
    pub parts: u32,
}

impl Writer {
    /// A writer that is a single part (a source).
    pub fn single(stage: &str) -> Self {
        Writer {
            stage: stage.to_string(),
            part: 0,
            parts: 1,
        }
    }

    fn encode(&self) -> String {
        format!("{}#{}/{}", self.stage, self.part, self.parts)
    }

    fn decode(text: &str) -> Result<Self, String> {
        let parsed = text.rsplit_once('#').and_then(|(stage, numbers)| {
            let (part, parts) = numbers.split_once('/')?;
            Some((stage, part.parse::<u32>().ok()?, parts.parse::<u32>().ok()?))
        });
        match parsed {
            Some((stage, part, parts)) if part < parts && parts <= MAX_PARTS => Ok(Writer {
                stage: stage.to_string(),
                part,
                parts,
            }),
            _ => Err(format!("malformed {WRITER_HEADER} header {text:?}")),
        }
    }
}

/// A control marker read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    EndOfInput(Writer),
    Progress { writer: Writer, event_ms: i64 },
}

/// Headers of an end-of-input marker.
pub fn end_headers(writer: &Writer) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: EOF_HEADER,
            value: Some(writer.stage.as_bytes()),
        })
        .insert(Header {
            key: WRITER_HEADER,
            value: Some(writer.encode().as_bytes()),
        })
}

/// Headers of a progress marker.
pub fn progress_headers(writer: &Writer, event_ms: i64) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: PROGRESS_HEADER,
            value: Some(event_ms.to_string().as_bytes()),
        })
        .insert(Header {
            key: WRITER_HEADER,
            value: Some(writer.encode().as_bytes()),
        })
}

/// `None` for a data record; the marker, or why it is malformed, for a control record.
pub fn control_of<M: Message>(message: &M) -> Option<Result<Control, String>> {
    let headers = message.headers()?;
    let mut end: Option<String> = None;
    let mut progress: Option<String> = None;
    let mut writer: Option<String> = None;
    for header in headers.iter() {
        let value = || String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned();
        match header.key {
            EOF_HEADER => end = Some(value()),
            PROGRESS_HEADER => progress = Some(value()),
            WRITER_HEADER => writer = Some(value()),
            _ => {}
        }
    }
    match (end, progress) {
        (None, None) => None,
        (Some(stage), _) => Some(match writer {
            Some(w) => Writer::decode(&w).map(Control::EndOfInput),
            None => Ok(Control::EndOfInput(Writer::single(&stage))),
        }),
        (None, Some(t)) => Some(
            match (
                t.parse::<i64>(),
                writer.as_deref().map(Writer::decode).transpose(),
            ) {
                (Ok(event_ms), Ok(Some(writer))) => Ok(Control::Progress { writer, event_ms }),
                (Err(_), _) => Err(format!("malformed {PROGRESS_HEADER} header {t:?}")),
                (_, Err(e)) => Err(e),
                (_, Ok(None)) => Err(format!("progress marker without {WRITER_HEADER}")),
            },
        ),
    }
}

/// What one input partition has seen of its writers' markers.
#[derive(Debug, Default, Clone)]
pub struct InputMarkers {
    /// Per writer stage: its part count and the parts that ended.
    ended: BTreeMap<String, (u32, BTreeSet<u32>)>,
    /// Per writer stage: its part count and each part's latest progress.
    progress: BTreeMap<String, (u32, BTreeMap<u32, i64>)>,
    /// Offset of the first end marker: the committed position never passes it, so that a
    /// restarted reader sees every writer's end marker again.
    first_end: Option<i64>,
    /// The combined progress last reported.
    reported: Option<i64>,
}

impl InputMarkers {
    /// Where the committed position must stay (at the first end marker), if anywhere.
    pub fn hold(&self) -> Option<i64> {
        self.first_end
    }

    /// Records an end marker at `offset`; returns whether every writer has now ended.
    /// `Err` when the marker contradicts earlier ones or exceeds the tracking limits.
    pub fn end(&mut self, writer: &Writer, offset: i64) -> Result<bool, String> {
        if !self.ended.contains_key(&writer.stage) && self.ended.len() >= MAX_WRITERS {
            return Err(format!("more than {MAX_WRITERS} writer stages"));
        }
        let (parts, done) = self
            .ended
            .entry(writer.stage.clone())
            .or_insert_with(|| (writer.parts, BTreeSet::new()));
        if *parts != writer.parts {
            return Err(format!(
                "writer {} declares {} parts, earlier markers {}",
                writer.stage, writer.parts, parts
            ));
        }
        done.insert(writer.part);
        self.first_end.get_or_insert(offset);
        Ok(self.is_ended())
    }

    /// Whether every part of every writer stage seen has ended.
    pub fn is_ended(&self) -> bool {
        !self.ended.is_empty()
            && self
                .ended
                .values()
                .all(|(parts, done)| done.len() as u32 == *parts)
    }

    /// Records a progress marker; returns the input's combined progress when it moved:
    /// the lowest over every part of every writer stage, once every part has reported
    /// (a part that ended counts as no constraint).
    pub fn progress(&mut self, writer: &Writer, event_ms: i64) -> Result<Option<i64>, String> {
        if !self.progress.contains_key(&writer.stage) && self.progress.len() >= MAX_WRITERS {
            return Err(format!("more than {MAX_WRITERS} writer stages"));
        }
        let (parts, latest) = self
            .progress
            .entry(writer.stage.clone())
            .or_insert_with(|| (writer.parts, BTreeMap::new()));
        if *parts != writer.parts {
            return Err(format!(
                "writer {} declares {} parts, earlier markers {}",
                writer.stage, writer.parts, parts
            ));
        }
        let slot = latest.entry(writer.part).or_insert(event_ms);
        *slot = (*slot).max(event_ms);
        let mut combined = i64::MAX;
        for (stage, (parts, latest)) in &self.progress {
            let ended = self.ended.get(stage).map(|(_, done)| done);
            for part in 0..*parts {
                if ended.is_some_and(|done| done.contains(&part)) {
                    continue;
                }
                match latest.get(&part) {
                    Some(t) => combined = combined.min(*t),
                    None => return Ok(None),
                }
            }
        }
        if combined == i64::MAX || self.reported.is_some_and(|r| r >= combined) {
            return Ok(None);
        }
        self.reported = Some(combined);
        Ok(Some(combined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(stage: &str, part: u32, parts: u32) -> Writer {
        Writer {
            stage: stage.into(),
            part,
            parts,
        }
    }

    #[test]
    fn writer_identity_round_trips_and_rejects_garbage() {
        let writer = w("moving#x", 2, 3);
        assert_eq!(Writer::decode(&writer.encode()), Ok(writer));
        for bad in ["", "stage", "s#1", "s#3/3", "s#a/2", "s#0/999999999"] {
            assert!(Writer::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_input_ends_only_when_every_part_of_every_writer_has_ended() {
        let mut m = InputMarkers::default();
        assert_eq!(m.end(&w("moving", 0, 2), 10), Ok(false));
        // The same part again (a new owner after a rebalance) changes nothing.
        assert_eq!(m.end(&w("moving", 0, 2), 12), Ok(false));
        assert_eq!(m.hold(), Some(10));
        assert_eq!(m.end(&w("moving", 1, 2), 20), Ok(true));
        assert_eq!(m.hold(), Some(10), "the position stays at the first marker");
    }

    #[test]
    fn contradicting_part_counts_are_refused() {
        let mut m = InputMarkers::default();
        assert_eq!(m.end(&w("a", 0, 2), 1), Ok(false));
        assert!(m.end(&w("a", 1, 3), 2).is_err());
        assert!(!m.is_ended());
    }

    #[test]
    fn progress_is_the_minimum_over_every_part_once_all_reported() {
        let mut m = InputMarkers::default();
        assert_eq!(m.progress(&w("s", 0, 2), 100), Ok(None));
        assert_eq!(m.progress(&w("s", 1, 2), 90), Ok(Some(90)));
        assert_eq!(m.progress(&w("s", 1, 2), 150), Ok(Some(100)));
        // Never reported twice, never backwards.
        assert_eq!(m.progress(&w("s", 1, 2), 160), Ok(None));
        assert_eq!(m.progress(&w("s", 0, 2), 50), Ok(None));
        // A part that ended no longer holds the others back.
        assert_eq!(m.end(&w("s", 0, 2), 7), Ok(false));
        assert_eq!(m.progress(&w("s", 1, 2), 170), Ok(Some(170)));
    }

    #[test]
    fn tracked_writers_are_bounded() {
        let mut m = InputMarkers::default();
        for i in 0..MAX_WRITERS {
            assert!(m.progress(&w(&format!("s{i}"), 0, 1), 1).is_ok());
        }
        assert!(m.progress(&w("one-more", 0, 1), 1).is_err());
    }
}
