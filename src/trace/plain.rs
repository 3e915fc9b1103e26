//! The plain format: what `expected.trace` files hold, already normalised.
//!
//! One line per call (or per half of a call that was interrupted by other actors), the actor
//! in a 10-wide column, its note indented below; narration as `actor     » text`. Values that
//! change from run to run print as words (`PORT`, `0xADDR`, `PID`, `left {…}`), measured
//! narration (`» ~ `) has its numbers replaced by `N`. No times: order says when.

use std::fmt::Write as _;

use super::order::Item;
use super::render::{self, Form};

/// Where a note starts: under the call, past the actor column.
pub const NOTE_INDENT: &str = "          ";

/// The text of one item.
pub fn item(item: &Item) -> String {
    let mut out = String::new();
    match item {
        Item::Whole(call) => {
            line(&mut out, &call.actor, &call.line(Form::Normalised));
            note(&mut out, call.note.as_deref());
        }
        Item::Unfinished {
            actor,
            name,
            before,
            fills,
            ..
        } => line(
            &mut out,
            actor,
            &render::unfinished_line(name, before, *fills, Form::Normalised),
        ),
        Item::Resumed(call) => {
            line(&mut out, &call.actor, &call.resumed(Form::Normalised));
            note(&mut out, call.note.as_deref());
        }
        Item::Say {
            actor, text, measured, ..
        } => {
            for part in text.lines() {
                if *measured {
                    line(&mut out, actor, &format!("» ~ {}", render::digits_to_n(part)));
                } else {
                    line(&mut out, actor, &format!("» {}", render::ports_in_text(part)));
                }
            }
        }
        Item::Repeat { first, .. } => line(&mut out, &first.actor, &repeat_text("N")),
        Item::Mark { actor, text, .. } => line(&mut out, actor, &render::pieces(text, Form::Normalised)),
    }
    out
}

/// `[the same call N more times]`.
pub fn repeat_text(count: &str) -> String {
    format!("[the same call {count} more times]")
}

fn line(out: &mut String, actor: &str, text: &str) {
    let _ = writeln!(out, "{actor:<10}{text}");
}

fn note(out: &mut String, note: Option<&str>) {
    if let Some(note) = note {
        let _ = writeln!(out, "{NOTE_INDENT}# {note}");
    }
}
