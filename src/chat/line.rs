//! Line framing: bytes in, whole clean lines out, a partial line kept, an over-long line cut off.

use super::MAX_LINE;

/// What a client's bytes completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole line, without its `\n` or `\r\n`, made safe to show on a terminal.
    Line(String),
    /// The line grew past [`MAX_LINE`]; its bytes up to the next `\n` are thrown away.
    TooLong,
}

/// One client's unfinished input: TCP is a byte stream, so a line may arrive in pieces.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// True from the moment a line passes the limit until its newline arrives.
    discarding: bool,
}

impl Lines {
    /// Takes newly arrived bytes and returns what they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            if !self.discarding {
                if self.partial.len() + body.len() > MAX_LINE {
                    // Say so now, not at the newline: it may never come, and memory stays bounded.
                    self.discarding = true;
                    self.partial.clear();
                    frames.push(Frame::TooLong);
                } else {
                    self.partial.extend_from_slice(body);
                }
            }
            if complete {
                if !self.discarding {
                    frames.push(Frame::Line(clean(&self.partial)));
                }
                self.partial.clear();
                self.discarding = false;
            }
        }
        frames
    }
}

/// Makes a line harmless: invalid UTF-8 and control characters (ESC, CR, DEL, the C1 range
/// that holds CSI) become U+FFFD, so nobody can move another person's cursor or clear their
/// screen. Tab stays: it is ordinary text. A trailing `\r` is the `\r\n` ending and is dropped.
pub fn clean(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Frame {
        Frame::Line(s.into())
    }

    #[test]
    fn a_line_split_across_reads_is_kept_until_its_newline() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"hel"), []);
        assert_eq!(lines.push(b"lo\nwor"), [line("hello")]);
        assert_eq!(lines.push(b"ld\r"), []);
        assert_eq!(lines.push(b"\n\n"), [line("world"), line("")]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_and_one_more_byte_does_not() {
        let mut lines = Lines::default();
        let full = "x".repeat(MAX_LINE);
        assert_eq!(lines.push(format!("{full}\n").as_bytes()), [line(&full)]);
        assert_eq!(lines.push(full.as_bytes()), []);
        assert_eq!(lines.push(b"y"), [Frame::TooLong]);
        assert_eq!(lines.push(&[b'z'; 3 * MAX_LINE]), [], "the rest is dropped quietly");
        assert_eq!(lines.push(b"z\nok\n"), [line("ok")]);
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
