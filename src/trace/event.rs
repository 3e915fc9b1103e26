//! What a traced process reports, and the wire format that carries it to a collector.
//!
//! A call is two events, [`What::Enter`] just before the syscall and [`What::Exit`] just after,
//! each stamped with CLOCK_MONOTONIC nanoseconds. That clock is system-wide, so events from
//! every process of a demo can be put in one order, and a cause's enter always comes before
//! its effect's exit (the effect cannot return before the cause was called).
//!
//! On the wire (a demo's processes writing to the collector's pipe on their fd 1) an event is
//! one line: the byte 0x1e, the kind (`enter`, `exit`, `say`, `stage-begin`, `stage-end`),
//! then tab-separated fields with `\`, tab, newline and carriage return escaped. A line is
//! written with one write(2) of at most [`MAX_RECORD`] bytes: less than PIPE_BUF (4096), so
//! that writes from several processes into one pipe never interleave. Long texts are cut to
//! fit. Under strace a record shows as `write(1, "\36enter\t…"…)`, the markers of a stage as
//! `write(1, "\36stage-begin\t…"…)`.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::pieces::{Args, Piece};

/// The first byte of every record line.
pub const RECORD_START: u8 = 0x1e;
/// The longest record line, newline included: under PIPE_BUF, so one write is atomic.
pub const MAX_RECORD: usize = 4000;

/// One thing that happened in a traced thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC, in nanoseconds.
    pub t: u64,
    pub pid: i32,
    pub tid: i32,
    /// Who did it: `server`, `client#2`.
    pub actor: String,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A call is about to be made, with the arguments known before it; `fills` when the
    /// kernel fills in more that strace prints after the call returns.
    Enter {
        name: Cow<'static, str>,
        args: Args,
        fills: bool,
    },
    /// The call returned (or, `ret` empty and no errno, never did).
    Exit {
        name: Cow<'static, str>,
        /// When the syscall itself was made (after its enter was reported): how long it
        /// took is measured from here.
        called: u64,
        /// The arguments the kernel filled in.
        args: Args,
        ret: Vec<Piece>,
        errno: Option<i32>,
        /// The row of the notes table for this call, chosen in its context.
        note: Cow<'static, str>,
        /// The lesson's own words for this call, which always print.
        explained: Option<String>,
    },
    /// A line of narration; `measured` when its numbers change from run to run.
    Say { text: String, measured: bool },
    /// The thread starts running plumbing that is not the lesson: nothing is recorded inside.
    StageBegin,
    /// The plumbing is done.
    StageEnd,
}

impl What {
    fn kind(&self) -> &'static str {
        match self {
            What::Enter { .. } => "enter",
            What::Exit { .. } => "exit",
            What::Say { .. } => "say",
            What::StageBegin => "stage-begin",
            What::StageEnd => "stage-end",
        }
    }
}

/// The event as one record line, cut to fit [`MAX_RECORD`].
pub fn encode(event: &Event) -> Vec<u8> {
    let mut text_limit = MAX_RECORD;
    loop {
        let mut line = encode_with_limit(event, text_limit);
        if line.len() <= MAX_RECORD {
            return line.into_bytes();
        }
        if text_limit < 16 {
            // Still too long: cut the line itself, not in the middle of an escape.
            let cut = (0..MAX_RECORD - 1)
                .rev()
                .find(|&i| line.is_char_boundary(i))
                .unwrap_or(0);
            line.truncate(cut);
            while line.ends_with('\\') {
                line.pop();
            }
            line.push('\n');
            return line.into_bytes();
        }
        text_limit /= 2;
    }
}

fn encode_with_limit(event: &Event, limit: usize) -> String {
    let mut fields = Fields::new(limit);
    fields.push(event.what.kind());
    fields.push(&event.t.to_string());
    fields.push(&event.pid.to_string());
    fields.push(&event.tid.to_string());
    fields.push(&event.actor);
    match &event.what {
        What::Enter { name, args, fills } => {
            fields.push(name);
            fields.push(if *fills { "1" } else { "0" });
            fields.args(args);
        }
        What::Exit {
            name,
            called,
            args,
            ret,
            errno,
            note,
            explained,
        } => {
            fields.push(name);
            fields.push(&called.to_string());
            fields.args(args);
            fields.pieces(ret);
            fields.push(&errno.map_or(String::new(), |e| e.to_string()));
            fields.push(note);
            fields.push(if explained.is_some() { "1" } else { "0" });
            fields.push(explained.as_deref().unwrap_or_default());
        }
        What::Say { text, measured } => {
            fields.push(if *measured { "1" } else { "0" });
            fields.push(text);
        }
        What::StageBegin | What::StageEnd => {}
    }
    let mut line = String::from(RECORD_START as char);
    line.push_str(&fields.joined.join("\t"));
    line.push('\n');
    line
}

/// Tab-separated, escaped fields; each text cut to `limit` bytes.
struct Fields {
    joined: Vec<String>,
    limit: usize,
}

impl Fields {
    fn new(limit: usize) -> Fields {
        Fields {
            joined: Vec::new(),
            limit,
        }
    }

    fn push(&mut self, text: &str) {
        let mut cut = text.len().min(self.limit);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut escaped = String::with_capacity(cut);
        for c in text[..cut].chars() {
            match c {
                '\\' => escaped.push_str("\\\\"),
                '\t' => escaped.push_str("\\t"),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                c => escaped.push(c),
            }
        }
        if cut < text.len() {
            escaped.push('…');
        }
        self.joined.push(escaped);
    }

    fn args(&mut self, args: &Args) {
        self.push(&args.0.len().to_string());
        for arg in &args.0 {
            self.pieces(arg);
        }
    }

    /// A count, then each piece as a tag and its values; a run too long to fit ends in `...`.
    fn pieces(&mut self, pieces: &[Piece]) {
        let room = self.limit / 4;
        let (kept, cut) = if pieces.len() > room {
            (&pieces[..room], true)
        } else {
            (pieces, false)
        };
        self.push(&(kept.len() + usize::from(cut)).to_string());
        for piece in kept {
            match piece {
                Piece::Text(text) => {
                    self.push("T");
                    self.push(text);
                }
                // Flags are the same on every run: their names travel as text.
                Piece::Flags { .. } => {
                    self.push("T");
                    self.push(&super::render::pieces(
                        std::slice::from_ref(piece),
                        super::render::Form::Verbatim,
                    ));
                }
                Piece::Fd(fd) => {
                    self.push("F");
                    self.push(&fd.to_string());
                }
                Piece::Int(value) => {
                    self.push("I");
                    self.push(&value.to_string());
                }
                Piece::Bytes { head, len } => {
                    self.push("B");
                    self.push(&len.to_string());
                    self.push(&hex(head));
                }
                Piece::Path(bytes) => {
                    self.push("N");
                    self.push(&hex(bytes));
                }
                Piece::Uid(id) => {
                    self.push("U");
                    self.push(&id.to_string());
                }
                Piece::Gid(id) => {
                    self.push("G");
                    self.push(&id.to_string());
                }
                Piece::Port(port) => {
                    self.push("P");
                    self.push(&port.to_string());
                }
                Piece::Pointer(address) => {
                    self.push("A");
                    self.push(&address.map_or("?".to_string(), |a| a.to_string()));
                }
                Piece::Pid(pid) => {
                    self.push("D");
                    self.push(&pid.to_string());
                }
                Piece::TimeLeft { secs, nanos } => {
                    self.push("L");
                    self.push(&secs.to_string());
                    self.push(&nanos.to_string());
                }
            }
        }
        if cut {
            self.push("T");
            self.push("...");
        }
    }
}

/// Bytes as two hex digits each: they may be anything, a tab or a NUL among them.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A record line (without its newline) back into an event; `None` for anything else.
pub fn decode(line: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(line.strip_prefix(&[RECORD_START])?).ok()?;
    let mut fields = text.split('\t').map(unescape);
    let mut next = || fields.next();
    let kind = next()?;
    let t = next()?.parse().ok()?;
    let pid = next()?.parse().ok()?;
    let tid = next()?.parse().ok()?;
    let actor = next()?;
    let what = match kind.as_str() {
        "enter" => What::Enter {
            name: Cow::Owned(next()?),
            fills: next()? == "1",
            args: read_args(&mut next)?,
        },
        "exit" => {
            let name = Cow::Owned(next()?);
            let called = next()?.parse().ok()?;
            let args = read_args(&mut next)?;
            let ret = read_pieces(&mut next)?;
            let errno = next()?;
            let note = Cow::Owned(next()?);
            let has_explanation = next()? == "1";
            let explanation = next().unwrap_or_default();
            What::Exit {
                name,
                called,
                args,
                ret,
                errno: if errno.is_empty() {
                    None
                } else {
                    Some(errno.parse().ok()?)
                },
                note,
                explained: has_explanation.then_some(explanation),
            }
        }
        "say" => {
            let measured = next()? == "1";
            What::Say {
                measured,
                text: next().unwrap_or_default(),
            }
        }
        "stage-begin" => What::StageBegin,
        "stage-end" => What::StageEnd,
        _ => return None,
    };
    Some(Event {
        t,
        pid,
        tid,
        actor,
        what,
    })
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn read_args(next: &mut impl FnMut() -> Option<String>) -> Option<Args> {
    let count: usize = next()?.parse().ok()?;
    let mut args = Args::new();
    for _ in 0..count {
        // A record cut short keeps the arguments that arrived whole.
        match read_pieces(next) {
            Some(pieces) => args.0.push(pieces),
            None => break,
        }
    }
    Some(args)
}

fn read_pieces(next: &mut impl FnMut() -> Option<String>) -> Option<Vec<Piece>> {
    let count: usize = next()?.parse().ok()?;
    let mut pieces = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let piece = match next()?.as_str() {
            "T" => Piece::text(next()?),
            "F" => Piece::Fd(next()?.parse().ok()?),
            "I" => Piece::Int(next()?.parse().ok()?),
            "B" => {
                let len = next()?.parse().ok()?;
                let head = unhex(&next()?)?;
                Piece::Bytes { head, len }
            }
            "N" => Piece::Path(unhex(&next()?)?),
            "U" => Piece::Uid(next()?.parse().ok()?),
            "G" => Piece::Gid(next()?.parse().ok()?),
            "P" => Piece::Port(next()?.parse().ok()?),
            "A" => Piece::Pointer(next()?.parse().ok()),
            "D" => Piece::Pid(next()?.parse().ok()?),
            "L" => Piece::TimeLeft {
                secs: next()?.parse().ok()?,
                nanos: next()?.parse().ok()?,
            },
            _ => return None,
        };
        pieces.push(piece);
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: What) -> Event {
        Event {
            t: 123_456_789,
            pid: 40,
            tid: 41,
            actor: "client#1".into(),
            what,
        }
    }

    #[test]
    fn every_kind_survives_the_wire() {
        let args = Args::new()
            .fd(3)
            .bytes(b"tab\there\nnewline \\ 127.0.0.1:4000 \x1e and more than thirty-two bytes")
            .arg(vec![Piece::text("["), Piece::Int(128), Piece::text(" => 16]")])
            .unknown_pointer()
            .pointer(0x7ffd_0000_1000usize as *const u8)
            .pid(77)
            .flags(libc::MSG_NOSIGNAL as i64, super::super::render::MSG_FLAGS)
            .path(b"\0socklab-18.k3J9xq\t/echo.sock")
            .arg(vec![Piece::Uid(1000), Piece::Gid(100)]);
        let events = [
            event(What::Enter {
                name: "sendto".into(),
                args: args.clone(),
                fills: false,
            }),
            event(What::Exit {
                name: "pselect6".into(),
                called: 123_456_000,
                args: Args::new().fd(4),
                ret: vec![
                    Piece::Int(1),
                    Piece::text(" (in [3], left "),
                    Piece::TimeLeft { secs: 0, nanos: 5 },
                    Piece::text(")"),
                ],
                errno: None,
                note: "pselect6".into(),
                explained: Some("why\tnot".into()),
            }),
            event(What::Exit {
                name: "recvfrom".into(),
                called: 0,
                args: Args::new(),
                ret: Vec::new(),
                errno: Some(libc::EAGAIN),
                note: "recv".into(),
                explained: None,
            }),
            event(What::Say {
                text: "hello\nworld".into(),
                measured: true,
            }),
            event(What::StageBegin),
            event(What::StageEnd),
        ];
        for original in events {
            let line = encode(&original);
            assert_eq!(line[0], RECORD_START);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
            let decoded = decode(&line[..line.len() - 1]).expect("decodes");
            let expected = match &original.what {
                // Flags travel as their names.
                What::Enter { name, args, fills } => {
                    let mut args = args.clone();
                    args.0[6] = vec![Piece::text("MSG_NOSIGNAL")];
                    event(What::Enter {
                        name: name.clone(),
                        args,
                        fills: *fills,
                    })
                }
                _ => original.clone(),
            };
            assert_eq!(decoded, expected);
        }
        assert!(encode(&event(What::StageBegin)).starts_with(b"\x1estage-begin\t"));
    }

    #[test]
    fn long_records_are_cut_to_fit_one_atomic_write() {
        let long = event(What::Say {
            text: "x".repeat(10_000),
            measured: false,
        });
        let line = encode(&long);
        assert!(line.len() <= MAX_RECORD);
        match decode(&line[..line.len() - 1]).expect("decodes").what {
            What::Say { text, .. } => assert!(
                text.len() > 1000 && text.ends_with('…'),
                "{} bytes: {:?}",
                text.len(),
                &text[text.len() - 10..]
            ),
            other => panic!("{other:?}"),
        }
        let many = event(What::Enter {
            name: "poll".into(),
            args: Args::new().arg((0..3000).map(Piece::Fd).collect()),
            fills: false,
        });
        let line = encode(&many);
        assert!(line.len() <= MAX_RECORD && line.ends_with(b"\n"));
        assert!(decode(&line[..line.len() - 1]).is_some(), "a cut record still decodes");
    }

    #[test]
    fn other_lines_are_not_records() {
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(b"\x1ebogus\t1\t2\t3\tx"), None);
    }
}
