//! Server-sent events: the bytes of a `text/event-stream` body split into
//! lines ([`Lines`]) and lines turned into events ([`SseParser`], the
//! WHATWG rules that matter here). Pure: no I/O, so it is tested directly.

/// Longest event-stream line accepted; a longer one is dropped whole.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last `id:` seen on the stream (it carries over to later events).
    pub id: Option<String>,
    /// `event:`, `message` when the event named none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Turns event-stream lines into events.
#[derive(Debug, Default)]
pub struct SseParser {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (with or without its line ending); returns the event a blank line completes.
    pub fn feed(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = self.event.take();
            let data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return None;
            }
            return Some(SseEvent {
                id: self.id.clone(),
                event: event.unwrap_or_else(|| "message".to_string()),
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// Splits bytes, as they arrive in pieces of any size, into lines of at
/// most `max` bytes; a longer line is dropped whole (up to its end).
#[derive(Debug)]
pub struct Lines {
    pending: Vec<u8>,
    max: usize,
    /// Inside an overlong line: drop bytes up to the next line end.
    skipping: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new(MAX_LINE)
    }
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            pending: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete line (without its line ending), if one has arrived.
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            match self.pending.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    let raw: Vec<u8> = self.pending.drain(..=end).collect();
                    if std::mem::take(&mut self.skipping) || raw.len() > self.max + 1 {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&raw[..end]);
                    return Some(text.strip_suffix('\r').unwrap_or(&text).to_string());
                }
                None => {
                    if self.pending.len() > self.max {
                        self.pending.clear();
                        self.skipping = true;
                    }
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_become_events() {
        let mut p = SseParser::default();
        let lines = [
            ": keep-alive\n",
            "id: 7\n",
            "event: entry\n",
            "data: {\"seq\":7,\n",
            "data:\"x\":1}\r\n",
            "\n",
        ];
        let mut events = vec![];
        for l in lines {
            events.extend(p.feed(l));
        }
        assert_eq!(
            events,
            vec![SseEvent {
                id: Some("7".into()),
                event: "entry".into(),
                data: "{\"seq\":7,\n\"x\":1}".into(),
            }]
        );
        // A blank line without data dispatches nothing; the id is kept.
        assert_eq!(p.feed("\n"), None);
        assert_eq!(p.feed("event: entry"), None);
        assert_eq!(p.feed("data"), None);
        let ev = p.feed("").unwrap();
        assert_eq!((ev.id.as_deref(), ev.data.as_str()), (Some("7"), ""));
    }

    #[test]
    fn lines_come_out_whole_whatever_the_pieces() {
        let text = b"id: 1\r\ndata: {\"a\":1}\n\n: keep-alive\n";
        for size in 1..text.len() {
            let mut lines = Lines::default();
            let mut out = vec![];
            for piece in text.chunks(size) {
                lines.push(piece);
                while let Some(l) = lines.next_line() {
                    out.push(l);
                }
            }
            assert_eq!(
                out,
                ["id: 1", "data: {\"a\":1}", "", ": keep-alive"],
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn an_overlong_line_is_dropped_whole() {
        let mut lines = Lines::new(8);
        lines.push(b"short\n0123456789");
        assert_eq!(lines.next_line().as_deref(), Some("short"));
        assert_eq!(lines.next_line(), None);
        lines.push(b"abcdef");
        assert_eq!(lines.next_line(), None);
        lines.push(b"tail\nnext\n");
        assert_eq!(lines.next_line().as_deref(), Some("next"));
        assert_eq!(lines.next_line(), None);
        // Exactly at the limit is still a line.
        lines.push(b"12345678\n");
        assert_eq!(lines.next_line().as_deref(), Some("12345678"));
    }
}
