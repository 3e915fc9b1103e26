//! The human format: times, actors, strace's lines, notes; colour on a terminal.
//!
//! `+0.001530 client#1  connect(3, {…}, 16) = 0` and below it `# what it means`. A call
//! that took a millisecond or more says `[blocked 1.3 ms]`. Colour (dim times, one colour per
//! actor, red errors, bold narration, magenta for strace's signal and exit lines) is used only
//! when stdout is a terminal and `NO_COLOR` is unset or empty.

use std::time::Duration;

use super::order::Item;
use super::plain::repeat_text;
use super::render::{self, Form};

/// A call that took at least this long is marked `[blocked …]`.
const BLOCKED_AT_LEAST: Duration = Duration::from_millis(1);
/// Notes start under the call, past the time and actor columns.
const NOTE_INDENT: &str = "                    ";

pub struct Human {
    /// CLOCK_MONOTONIC ns that times count from.
    origin: u64,
    colour: bool,
}

impl Human {
    pub fn new(origin: u64) -> Human {
        Human {
            origin,
            colour: super::sink::colour_wanted(),
        }
    }

    /// The text of one item.
    pub fn item(&self, item: &Item) -> String {
        match item {
            Item::Whole(call) => {
                let line = call.line(Form::Verbatim);
                self.call(call.enter_t, &call.actor, &line, call.blocked(), call.note.as_deref())
            }
            Item::Unfinished {
                t,
                actor,
                name,
                before,
                fills,
                ..
            } => {
                let line = render::unfinished_line(name, before, *fills, Form::Verbatim);
                format!("{}{}{line}\n", self.stamp(*t), self.actor(actor))
            }
            Item::Resumed(call) => {
                let line = call.resumed(Form::Verbatim);
                self.call(call.exit_t, &call.actor, &line, call.blocked(), call.note.as_deref())
            }
            Item::Say { t, actor, text, .. } => text
                .lines()
                .map(|part| {
                    format!(
                        "{}{}{}\n",
                        self.stamp(*t),
                        self.actor(actor),
                        self.paint("1", &format!("» {part}"))
                    )
                })
                .collect(),
            Item::Repeat { first, count, .. } => format!(
                "{:10}{}{}\n",
                "",
                self.actor(&first.actor),
                self.paint("33", &repeat_text(&count.to_string()))
            ),
            Item::Mark { t, actor, text, .. } => format!(
                "{}{}{}\n",
                self.stamp(*t),
                self.actor(actor),
                self.paint("35", &render::pieces(text, Form::Verbatim))
            ),
        }
    }

    fn call(&self, t: u64, actor: &str, line: &str, blocked: u64, note: Option<&str>) -> String {
        // An error's part after `=` in red.
        let line = match line.rfind(" = -1 ") {
            Some(cut) => format!("{}{}", &line[..cut + 3], self.paint("31", &line[cut + 3..])),
            None => line.to_string(),
        };
        let mut text = format!("{}{}{line}", self.stamp(t), self.actor(actor));
        let blocked = Duration::from_nanos(blocked);
        if blocked >= BLOCKED_AT_LEAST {
            text.push_str(&self.paint("33", &format!("   [blocked {}]", duration(blocked))));
        }
        text.push('\n');
        if let Some(note) = note {
            text.push_str(NOTE_INDENT);
            text.push_str(&self.paint("2;3", &format!("# {note}")));
            text.push('\n');
        }
        text
    }

    fn stamp(&self, t: u64) -> String {
        let seconds = Duration::from_nanos(t.saturating_sub(self.origin)).as_secs_f64();
        self.paint("2", &format!("+{seconds:.6}")) + " "
    }

    /// Each actor keeps one colour; the column is 10 wide so calls line up.
    fn actor(&self, actor: &str) -> String {
        const PALETTE: [&str; 6] = ["36", "33", "35", "32", "34", "91"];
        let base = actor.split('#').next().unwrap_or(actor);
        let number: usize = actor.rsplit('#').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let hue = base.bytes().map(usize::from).sum::<usize>() + number;
        self.paint(PALETTE[hue % PALETTE.len()], &format!("{actor:<9}")) + " "
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
