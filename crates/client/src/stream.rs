//! From the bytes of `GET /v1/events` to journal entries: [`EntryDecoder`]
//! splits them into lines, parses the server-sent events and decodes each
//! `entry` event as a [`wire::EventEntry`](crate::wire::EventEntry). Pure,
//! so the same code serves the HTTP stream and tests over plain text.

use crate::sse::{Lines, SseParser};
use crate::wire::EventEntry;

/// One journal entry received: typed, and as the daemon sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub entry: EventEntry,
    /// The entry's JSON as received (with anything this client does not know).
    pub json: serde_json::Value,
}

impl Received {
    /// An `entry` event's data.
    pub fn decode(data: &str) -> Result<Received, StreamError> {
        let undecodable = |e: serde_json::Error| StreamError::Undecodable {
            data: data.chars().take(500).collect(),
            error: e.to_string(),
        };
        let json: serde_json::Value = serde_json::from_str(data).map_err(undecodable)?;
        let entry = serde_json::from_value(json.clone()).map_err(undecodable)?;
        Ok(Received { entry, json })
    }
}

/// Why reading the event stream gave no entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Nothing came before the deadline; the stream is still open.
    #[error("no entry came in time")]
    TimedOut,
    /// An event that is not an entry this client can read; the stream goes on.
    #[error("an entry this client cannot read ({error}): {data}")]
    Undecodable { data: String, error: String },
    /// The connection broke.
    #[error("{0}")]
    Broken(String),
}

/// Turns the bytes of an event stream, in pieces of any size, into entries.
#[derive(Debug, Default)]
pub struct EntryDecoder {
    lines: Lines,
    parser: SseParser,
}

impl EntryDecoder {
    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    /// The next entry the bytes so far complete: `None` when more bytes are
    /// needed. Events other than `entry` (or unnamed ones) are skipped.
    pub fn next_entry(&mut self) -> Option<Result<Received, StreamError>> {
        while let Some(line) = self.lines.next_line() {
            let Some(event) = self.parser.feed(&line) else {
                continue;
            };
            if event.event == "entry" || event.event == "message" {
                return Some(Received::decode(&event.data));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_of_the_stream_text() {
        let entry = r#"{"seq":1,"deployment":"d-000001","index":1,"at":"2026-03-03T10:00:00Z","kind":"resumed","hash":"a","prev_hash":"b","body":{"kind":"resumed","effects":["Prepare"]},"extra":true}"#;
        let text =
            format!(": hello\n\nid: 1\nevent: entry\ndata: {entry}\n\nevent: other\ndata: x\n\ndata: not json\n\n");
        let mut decoder = EntryDecoder::default();
        decoder.push(text.as_bytes());
        let got = decoder.next_entry().unwrap().unwrap();
        assert_eq!(got.entry.seq, 1);
        assert_eq!(got.json["extra"], true);
        assert!(matches!(
            decoder.next_entry(),
            Some(Err(StreamError::Undecodable { .. }))
        ));
        assert_eq!(decoder.next_entry(), None);
        assert!(matches!(
            Received::decode(r#"{"seq": 1}"#),
            Err(StreamError::Undecodable { .. })
        ));
    }
}
