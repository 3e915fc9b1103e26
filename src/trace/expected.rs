//! How a demo's plain trace is compared with its `expected.trace` (in `tests/programs/lessons.rs`).
//!
//! Both are already normalised (`SOCKLAB_TRACE=plain` prints them so). What still varies
//! between runs is only how threads and processes interleave: which of two unrelated calls
//! came first, whether a call was interrupted by another actor's line (and so printed in two
//! halves), and so which actor's call a table note landed under (a table note prints once per
//! run, under the first call it applies to). [`by_actor`] takes those away: each actor's own
//! lines in order, a call's two halves joined into one line, and the table notes gathered
//! into one sorted group of their own.

use std::collections::{BTreeMap, HashMap};

use super::notes;
use super::render::strace_line;

/// The group that holds every table note of a trace, sorted.
pub const TABLE_NOTES: &str = "(table notes)";

/// Groups a plain trace by actor; a note line belongs to the call above it, or, if it is one
/// of the table's notes, to [`TABLE_NOTES`].
pub fn by_actor(trace: &str) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unfinished: HashMap<String, String> = HashMap::new();
    let mut last_actor = String::new();
    for line in trace.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(' ') {
            let note = line.trim().to_string();
            let words = note.strip_prefix("# ").unwrap_or(&note);
            let group = if notes::is_table_note(words) {
                TABLE_NOTES.to_string()
            } else {
                last_actor.clone()
            };
            groups.entry(group).or_default().push(note);
            continue;
        }
        let actor = line.split_whitespace().next().unwrap_or_default().to_string();
        let rest = line[actor.len()..].trim_start();
        last_actor = actor.clone();
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(actor, head.to_string());
            continue;
        }
        let whole = match (rest.strip_prefix("<... "), unfinished.remove(&actor)) {
            (Some(resumed), Some(head)) => {
                let tail = resumed.split_once(" resumed>").map_or(resumed, |(_, tail)| tail);
                repad(&format!("{head}{tail}"))
            }
            _ => rest.to_string(),
        };
        groups.entry(actor).or_default().push(whole);
    }
    if let Some(table_notes) = groups.get_mut(TABLE_NOTES) {
        table_notes.sort();
    }
    groups
}

/// Puts `=` back at column 40 after two halves were joined.
fn repad(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut split = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b')' {
            let spaces = bytes[i + 1..].iter().take_while(|&&c| c == b' ').count();
            if spaces > 0 && bytes[i + 1 + spaces..].starts_with(b"= ") {
                split = Some((i + 1, i + 1 + spaces + 2));
            }
        }
    }
    match split {
        Some((call_end, ret_start)) => strace_line(&line[..call_end], &line[ret_start..]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_join_and_table_notes_gather() {
        let table_note = notes::lookup("listen", None).unwrap();
        let trace = format!(
            "server    accept4(3,  <unfinished ...>\n\
             client#1  listen(4, 5)                            = 0\n\
             \x20         # {table_note}\n\
             server    <... accept4 resumed>NULL, NULL, SOCK_CLOEXEC) = 4\n\
             \x20         # the lesson's words\n\
             client#1  sendto(3, \"x\", 1, 0, NULL, 0 <unfinished ...>\n\
             server    » hi\n\
             client#1  <... sendto resumed>)                 = 1\n"
        );
        let groups = by_actor(&trace);
        assert_eq!(
            groups["server"],
            vec![
                strace_line("accept4(3, NULL, NULL, SOCK_CLOEXEC)", "4"),
                "# the lesson's words".into(),
                "» hi".into()
            ]
        );
        assert_eq!(
            groups["client#1"],
            vec![
                strace_line("listen(4, 5)", "0"),
                strace_line("sendto(3, \"x\", 1, 0, NULL, 0)", "1")
            ]
        );
        assert_eq!(groups[TABLE_NOTES], vec![format!("# {table_note}")]);
    }
}
