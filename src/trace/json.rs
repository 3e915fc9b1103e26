//! The JSON format: one object a line, for tools and tests.
//!
//! A call: `seq`, `t` (seconds from the start to its enter), `pid`, `tid`, `actor`, `syscall`,
//! `line` (the whole call as strace prints it, even when the human trace split it), `ret`,
//! `errno` (its name, or null), `note` (or null) and `blocked_us`. Narration: `seq`, `t`,
//! `pid`, `tid`, `actor`, `say`, `measured`. Identical calls folded after a call: `seq`, `t`
//! (the last one's), `pid`, `tid`, `actor`, `syscall`, `line` and `repeat`, the number of
//! calls, each with that line, that this one record stands for. A line of strace's that is not
//! a call (`socklab explain`: a signal arriving, a process ending): `seq`, `t`, `pid`, `tid`,
//! `actor` and `mark`, the line as strace printed it.

use std::fmt::Write as _;

use nix::errno::Errno;

use super::order::{Call, Item};
use super::render::{self, Form};

pub struct Json {
    /// CLOCK_MONOTONIC ns that times count from.
    origin: u64,
    seq: u64,
}

impl Json {
    pub fn new(origin: u64) -> Json {
        Json { origin, seq: 0 }
    }

    /// The line for one item; the first half of a split call has none (its record comes
    /// whole with its second half).
    pub fn item(&mut self, item: &Item) -> String {
        match item {
            Item::Whole(call) | Item::Resumed(call) => self.call(call),
            Item::Unfinished { .. } => String::new(),
            Item::Say {
                t,
                pid,
                tid,
                actor,
                text,
                measured,
            } => {
                self.seq += 1;
                format!(
                    "{{\"seq\":{},\"t\":{},\"pid\":{pid},\"tid\":{tid},\"actor\":{},\"say\":{},\"measured\":{measured}}}\n",
                    self.seq,
                    self.seconds(*t),
                    string(actor),
                    string(text)
                )
            }
            Item::Mark {
                t,
                pid,
                tid,
                actor,
                text,
            } => {
                self.seq += 1;
                format!(
                    "{{\"seq\":{},\"t\":{},\"pid\":{pid},\"tid\":{tid},\"actor\":{},\"mark\":{}}}\n",
                    self.seq,
                    self.seconds(*t),
                    string(actor),
                    string(&render::pieces(text, Form::Verbatim))
                )
            }
            Item::Repeat { first, count, last_t } => {
                self.seq += 1;
                format!(
                    "{{\"seq\":{},\"t\":{},\"pid\":{},\"tid\":{},\"actor\":{},\"syscall\":{},\"line\":{},\"repeat\":{count}}}\n",
                    self.seq,
                    self.seconds(*last_t),
                    first.pid,
                    first.tid,
                    string(&first.actor),
                    string(&first.name),
                    string(&first.line(Form::Verbatim))
                )
            }
        }
    }

    fn call(&mut self, call: &Call) -> String {
        self.seq += 1;
        let errno = call
            .errno
            .map_or("null".to_string(), |e| string(&format!("{:?}", Errno::from_raw(e))));
        format!(
            "{{\"seq\":{},\"t\":{},\"pid\":{},\"tid\":{},\"actor\":{},\"syscall\":{},\"line\":{},\"ret\":{},\"errno\":{errno},\"note\":{},\"blocked_us\":{}}}\n",
            self.seq,
            self.seconds(call.enter_t),
            call.pid,
            call.tid,
            string(&call.actor),
            string(&call.name),
            string(&call.line(Form::Verbatim)),
            string(&render::ret(&call.ret, call.errno, Form::Verbatim)),
            call.note.as_deref().map_or("null".to_string(), string),
            call.blocked() / 1000
        )
    }

    fn seconds(&self, t: u64) -> String {
        format!("{:.6}", t.saturating_sub(self.origin) as f64 / 1e9)
    }
}

/// A JSON string literal.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape() {
        assert_eq!(string("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
    }
}
