//! One client's inbox: the bytes the loop read for it, framed into lines, in a fixed buffer the
//! loop reads straight into.

use std::ops::Range;

use super::{INBOX, MAX_LINE};

/// What one arrival did to the line being built.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The bytes were kept (or, while a too-long line is thrown away, dropped quietly).
    Kept,
    /// The line being built passed [`MAX_LINE`] with no newline: it is thrown away, with the
    /// rest of it up to its newline. Said now, not at the newline: it may never come.
    TooLong,
}

/// `buf[start..complete]` holds whole lines, each ending in `\n`; `buf[complete..end]` the line
/// being built. TCP is a byte stream, so a line may arrive in pieces, or many in one read.
pub struct Inbox {
    buf: Box<[u8]>,
    start: usize,
    complete: usize,
    end: usize,
    /// True from the moment a line passes the limit until its newline arrives.
    discarding: bool,
    /// Whether the client has ever ended a line with `\n` (see [`Inbox::end_line`]).
    newline_seen: bool,
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox {
            buf: vec![0; INBOX].into_boxed_slice(),
            start: 0,
            complete: 0,
            end: 0,
            discarding: false,
            newline_seen: false,
        }
    }
}

impl Inbox {
    /// Where the next bytes go: the free end of the buffer, after moving what is still unread
    /// to the front (at most a few lines: the room consumes lines as they come while it runs).
    /// Empty when the buffer is full of lines the room has not consumed yet.
    pub fn space(&mut self) -> &mut [u8] {
        self.compact();
        &mut self.buf[self.end..]
    }

    /// Full: the loop must not read for this client until the room consumes a line.
    pub fn is_full(&self) -> bool {
        self.end - self.start == self.buf.len()
    }

    /// `n` bytes arrived at the end (in [`Inbox::space`]).
    pub fn push(&mut self, n: usize) -> Arrival {
        let from = self.end;
        self.end = (self.end + n).min(self.buf.len());
        if self.discarding {
            let Some(at) = self.buf[from..self.end].iter().position(|&b| b == b'\n') else {
                self.end = from; // still the too-long line: dropped
                return Arrival::Kept;
            };
            // The too-long line ends here: drop it through its newline, keep what follows.
            let newline = from + at;
            self.buf.copy_within(newline + 1..self.end, from);
            self.end -= newline + 1 - from;
            self.discarding = false;
            self.newline_seen = true;
        }
        if let Some(at) = self.buf[from..self.end].iter().rposition(|&b| b == b'\n') {
            self.complete = from + at + 1;
            self.newline_seen = true;
        }
        if self.partial() > MAX_LINE {
            self.discarding = true;
            self.end = self.complete;
            return Arrival::TooLong;
        }
        Arrival::Kept
    }

    /// Whether a whole line waits to be consumed.
    pub fn has_line(&self) -> bool {
        self.complete > self.start
    }

    /// Takes the next whole line: the range of its bytes (without `\n`) in [`Inbox::bytes`].
    pub fn next_line(&mut self) -> Option<Range<usize>> {
        let at = self.buf[self.start..self.complete].iter().position(|&b| b == b'\n')?;
        let line = self.start..self.start + at;
        self.start += at + 1;
        Some(line)
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Bytes of the line being built.
    pub fn partial(&self) -> usize {
        self.end - self.complete
    }

    pub fn newline_seen(&self) -> bool {
        self.newline_seen
    }

    /// Ends the line being built here, as a newline would: how a client that never sends
    /// newlines (seed 003's) marks the end of a message, by falling quiet. False if the buffer
    /// has no room for it yet.
    pub fn end_line(&mut self) -> bool {
        if self.partial() == 0 {
            return true;
        }
        self.compact();
        if self.end == self.buf.len() {
            return false;
        }
        self.buf[self.end] = b'\n';
        self.end += 1;
        self.complete = self.end;
        true
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.complete -= self.start;
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// Writes `line` into `out` made harmless: invalid UTF-8 and control characters (ESC, CR, DEL,
/// the C1 range that holds CSI) become U+FFFD, so nobody can move another person's cursor or
/// clear their screen. Tab stays: it is ordinary text. A trailing `\r` is the `\r\n` ending
/// and is dropped. `out` is cleared first and keeps its allocation.
pub fn clean_into(line: &[u8], out: &mut String) {
    out.clear();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            });
        }
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` as a loop would, read by read, and returns the arrivals and the whole
    /// lines taken then.
    fn feed(inbox: &mut Inbox, bytes: &[u8]) -> (Vec<Arrival>, Vec<String>) {
        let arrivals = arrive(inbox, bytes);
        (arrivals, lines(inbox))
    }

    /// Feeds `bytes` as a loop would, read by read, and returns the arrivals that were not
    /// plain keeps.
    fn arrive(inbox: &mut Inbox, bytes: &[u8]) -> Vec<Arrival> {
        let mut arrivals = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let space = inbox.space();
            assert!(!space.is_empty(), "the inbox is full");
            let n = space.len().min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            arrivals.push(inbox.push(n));
        }
        arrivals.retain(|a| *a != Arrival::Kept);
        arrivals
    }

    fn lines(inbox: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.next_line())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|range| {
                let mut text = String::new();
                clean_into(inbox.bytes(range), &mut text);
                text
            })
            .collect()
    }

    fn clean(bytes: &[u8]) -> String {
        let mut text = String::new();
        clean_into(bytes, &mut text);
        text
    }

    #[test]
    fn a_line_split_across_reads_is_kept_until_its_newline() {
        let mut inbox = Inbox::default();
        assert_eq!(feed(&mut inbox, b"hel").1, [""; 0]);
        assert_eq!(feed(&mut inbox, b"lo\nwor").1, ["hello"]);
        assert_eq!(feed(&mut inbox, b"ld\r").1, [""; 0]);
        assert_eq!(feed(&mut inbox, b"\n\n").1, ["world", ""]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_and_one_more_byte_does_not() {
        let mut inbox = Inbox::default();
        let full = "x".repeat(MAX_LINE);
        assert_eq!(feed(&mut inbox, format!("{full}\n").as_bytes()).1, [full.as_str()]);
        assert_eq!(feed(&mut inbox, full.as_bytes()), (vec![], vec![]));
        assert_eq!(feed(&mut inbox, b"y"), (vec![Arrival::TooLong], vec![]));
        assert_eq!(
            feed(&mut inbox, &[b'z'; 3 * INBOX]),
            (vec![], vec![]),
            "the rest is dropped quietly"
        );
        assert_eq!(feed(&mut inbox, b"z\nok\n").1, ["ok"]);
    }

    #[test]
    fn a_full_inbox_lends_no_space_until_a_line_is_taken() {
        let mut inbox = Inbox::default();
        let line = format!("{}\n", "l".repeat(INBOX / 4 - 1));
        for _ in 0..4 {
            arrive(&mut inbox, line.as_bytes());
        }
        assert!(inbox.is_full());
        assert!(inbox.space().is_empty());
        assert!(inbox.next_line().is_some());
        assert!(!inbox.is_full());
        assert_eq!(inbox.space().len(), INBOX / 4, "the rest moved to the front");
    }

    #[test]
    fn quiet_ends_a_line_only_for_a_client_that_never_sent_a_newline() {
        let mut inbox = Inbox::default();
        arrive(&mut inbox, b"no newline here");
        assert!(!inbox.newline_seen() && !inbox.has_line());
        assert!(inbox.end_line());
        assert_eq!(lines(&mut inbox), ["no newline here"]);
        arrive(&mut inbox, b"a line\nhalf");
        assert!(inbox.newline_seen());
        assert_eq!(inbox.partial(), 4);
    }

    #[test]
    fn control_characters_and_bad_utf8_become_replacement_characters() {
        assert_eq!(
            clean(b"\x1b[2Jhi\tthere\x07\x7f\r"),
            "\u{FFFD}[2Jhi\tthere\u{FFFD}\u{FFFD}"
        );
        assert_eq!(clean(b"a\xff\xfeb"), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(clean("C1 CSI \u{9b}31m".as_bytes()), "C1 CSI \u{FFFD}31m");
        assert_eq!(clean("caf\u{e9} \u{1F600}".as_bytes()), "caf\u{e9} \u{1F600}");
    }
}
