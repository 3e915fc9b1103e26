//! The trace excerpts in the lesson READMEs are true to the code. A fenced block marked
//! `trace` holds lines of the lesson's demo, as `make lesson-N` prints them (with times) or as
//! `expected.trace` holds them (plain); a block marked `trace PART` holds lines of the part
//! `make lesson-N ARGS=PART` runs, and is held against `expected.PART.trace`.
//!
//! For each actor, the block's lines (calls, their notes, narration) must appear among that
//! actor's lines in the expected trace, in the same order; a block may leave lines out (a line
//! of `...` says so), never change one. Table notes must be among the trace's table notes.
//! Which actor's line a table note lands under, and how actors interleave, change from run to
//! run; `expected::by_actor` takes both away, as `tests/programs/lessons.rs` does.
//!
//! A line as `make lesson-N` prints it is brought to the plain form first: its time and its
//! `[blocked …]` go, and the values that change from run to run take the plain form's words (a
//! port in `htons(…)` or in narration is `PORT`, an address of 6 or more hex digits `0xADDR`, the
//! child's pid in clone's result and in wait4's, and kill's, `PID`, the time select had left `left {…}`). Narration whose plain form is a
//! measurement (`» ~ …`) is compared with its numbers as `N`. Runs of spaces count as one.
//!
//! The lessons in [`TAGGED`] show their traces this way and must keep at least one block.

use std::collections::BTreeMap;

use crate::util;
use socklab::lessons::LESSONS;
use socklab::trace::expected::{self, TABLE_NOTES};
use socklab::trace::render::{digits_to_n, ports_in_text};

/// Lessons whose README trace excerpts are all marked `trace` (others may join by marking theirs).
const TAGGED: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19];

#[test]
fn every_trace_excerpt_in_a_readme_is_in_the_expected_trace() {
    let mut failures = Vec::new();
    for lesson in LESSONS {
        let folder = util::root().join("lessons").join(lesson.folder());
        let readme = std::fs::read_to_string(folder.join("README.md")).unwrap_or_default();
        let blocks = trace_blocks(&readme);
        if TAGGED.contains(&lesson.number) && blocks.is_empty() {
            failures.push(format!("{}: no ```trace block in its README", lesson.folder()));
        }
        for (part, block) in blocks {
            let file = part.map_or("expected.trace".to_string(), |p| format!("expected.{p}.trace"));
            let want = std::fs::read_to_string(folder.join(&file)).unwrap_or_default();
            if let Err(why) = excerpt_of(&block, &want) {
                failures.push(format!("{} README, a block of {file}: {why}", lesson.folder()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README's blocks marked `trace` (or `trace PART`): the part, and the block's text.
fn trace_blocks(readme: &str) -> Vec<(Option<String>, String)> {
    let mut blocks = Vec::new();
    // Inside a fenced block: Some((is a trace block, its part, its text)).
    let mut open: Option<(bool, Option<String>, String)> = None;
    for line in readme.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.as_mut(), fence) {
            (Some(_), Some(_)) => {
                if let Some((true, part, text)) = open.take() {
                    blocks.push((part, text));
                }
            }
            (Some((_, _, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, Some(info)) => {
                let mut words = info.split_whitespace();
                let is_trace = words.next() == Some("trace");
                open = Some((is_trace, words.next().map(String::from), String::new()));
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Whether `block` is an excerpt of the plain trace `want`; if not, the first line that is not.
fn excerpt_of(block: &str, want: &str) -> Result<(), String> {
    let plain: String = block
        .lines()
        .filter(|line| !line.trim().is_empty() && line.trim() != "...")
        .map(|line| to_plain(line) + "\n")
        .collect();
    let got = squeeze(expected::by_actor(&plain));
    let want = squeeze(expected::by_actor(want));
    if got.is_empty() {
        return Err("the block holds no trace line".into());
    }
    for (actor, lines) in &got {
        let Some(theirs) = want.get(actor) else {
            return Err(format!("no actor {actor} in the expected trace"));
        };
        if actor == TABLE_NOTES {
            if let Some(note) = lines.iter().find(|note| !theirs.contains(note)) {
                return Err(format!("table note not in the trace: {note}"));
            }
            continue;
        }
        let mut at = 0;
        for line in lines {
            match theirs[at..].iter().position(|theirs| same(line, theirs)) {
                Some(offset) => at += offset + 1,
                None => {
                    return Err(format!("{actor}: not in the expected trace (or out of order): {line}"));
                }
            }
        }
    }
    Ok(())
}

/// A block line and a line of the expected trace say the same: equal, a measurement (`» ~ …`)
/// with its numbers as `N`, or the second half of a call whose first half the block left out
/// (`<... sendto resumed>) = 11`, against the whole `sendto(…) = 11`).
fn same(line: &str, theirs: &str) -> bool {
    if line == theirs {
        return true;
    }
    if let Some((name, tail)) = line.strip_prefix("<... ").and_then(|l| l.split_once(" resumed>")) {
        return theirs.starts_with(&format!("{name}(")) && theirs.ends_with(tail);
    }
    match (line.strip_prefix("» "), theirs.strip_prefix("» ~ ")) {
        (Some(text), Some(measured)) => digits_to_n(text) == measured,
        _ => false,
    }
}

/// Every line of every group with its runs of spaces as one space.
fn squeeze(groups: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    groups
        .into_iter()
        .map(|(actor, lines)| {
            let lines = lines
                .iter()
                .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            (actor, lines)
        })
        .collect()
}

/// A line as `make lesson-N` prints it, in the plain form; a plain line stays as it is.
fn to_plain(line: &str) -> String {
    let mut line = line.to_string();
    // `+0.001234 server    socket(...)`: the time goes; the actor column stays where plain has it.
    if line.starts_with('+') {
        if let Some((time, rest)) = line.split_once(' ') {
            if time[1..].chars().all(|c| c.is_ascii_digit() || c == '.') {
                line = rest.to_string();
            }
        }
    }
    if let Some(at) = line.find("   [blocked ") {
        line.truncate(at);
    }
    // `          server    [the same call 3829 more times]`: a fold, its count a measurement.
    if line.split_whitespace().nth(1) == Some("[the") && line.contains("[the same call ") {
        let (actor, rest) = line.trim_start().split_once(' ').unwrap_or_default();
        return format!("{actor:<10}{}", digits_to_n(rest.trim_start()));
    }
    if line.starts_with(' ') {
        return line; // a note
    }
    let Some((actor, rest)) = line.split_once(' ') else {
        return line;
    };
    let rest = rest.trim_start();
    let rest = if rest.starts_with("» ") {
        ports_in_text(rest)
    } else {
        time_left(&pids(&addresses(&ports(rest))))
    };
    format!("{actor:<10}{rest}")
}

/// pselect6's `left {tv_sec=4, tv_nsec=999996264}` is `left {…}`: the kernel's own remainder.
fn time_left(call: &str) -> String {
    let Some(at) = call.find("left {tv_sec=") else {
        return call.to_string();
    };
    let Some(end) = call[at..].find('}') else {
        return call.to_string();
    };
    format!("{}left {{…}}{}", &call[..at], &call[at + end + 1..])
}

/// `htons(40123)` is `htons(PORT)`; `htons(0)` stays.
fn ports(call: &str) -> String {
    replace_numbers_after(call, "htons(", |n| n != "0", "PORT")
}

/// `0x7ffd9a1c65a0` is `0xADDR`: a pointer, which changes from run to run.
fn addresses(call: &str) -> String {
    let mut out = String::new();
    let mut rest = call;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let digits = after.chars().take_while(char::is_ascii_hexdigit).count();
        if digits >= 6 {
            out.push_str("0xADDR");
        } else {
            out.push_str(&rest[at..at + 2 + digits]);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A pid: what clone returns, what wait4 is asked for and returns, whom kill signals.
fn pids(call: &str) -> String {
    let is = |name: &str| call.starts_with(&format!("{name}(")) || call.starts_with(&format!("<... {name} resumed>"));
    if is("kill") {
        return replace_numbers_after(call, "kill(", |_| true, "PID");
    }
    if !is("clone") && !is("wait4") {
        return call.to_string();
    }
    let call = replace_numbers_after(call, "wait4(", |_| true, "PID");
    match call.rsplit_once(" = ") {
        Some((head, ret)) if !ret.is_empty() && ret.chars().all(|c| c.is_ascii_digit()) => format!("{head} = PID"),
        _ => call,
    }
}

fn replace_numbers_after(text: &str, prefix: &str, replace: impl Fn(&str) -> bool, word: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(&rest[..at + prefix.len()]);
        let number = &after[..digits];
        out.push_str(if digits > 0 && replace(number) { word } else { number });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_human_line_becomes_its_plain_form() {
    assert_eq!(
        to_plain(
            "+0.016323 server    <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(50752), sin_addr=inet_addr(\"127.0.0.1\")}, [128 => 16], SOCK_CLOEXEC) = 4   [blocked 1.0 ms]"
        ),
        "server    <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, [128 => 16], SOCK_CLOEXEC) = 4"
    );
    assert_eq!(
        to_plain("+0.002929 server    » connected by 127.0.0.1:57056"),
        "server    » connected by 127.0.0.1:PORT"
    );
    assert_eq!(
        to_plain("+0.3 client#4  recvfrom(3, 0x7ffe0040c440, 100, 0, NULL, NULL) = -1 EAGAIN"),
        "client#4  recvfrom(3, 0xADDR, 100, 0, NULL, NULL) = -1 EAGAIN"
    );
    assert_eq!(
        to_plain("+0.1 server    <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 19666"),
        "server    <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = PID"
    );
    assert_eq!(
        to_plain("+0.1 server    wait4(19666,  <unfinished ...>"),
        "server    wait4(PID,  <unfinished ...>"
    );
    assert_eq!(
        to_plain("+0.1 outside   kill(31634, SIGUSR1)                    = 0"),
        "outside   kill(PID, SIGUSR1)                    = 0"
    );
    assert!(same("» recv gave up after 206 ms", "» ~ recv gave up after N ms"));
    assert_eq!(
        to_plain(
            "+0.6 client    <... pselect6 resumed>)                 = 1 (in [4], left {tv_sec=4, tv_nsec=997333272})   [blocked 2.7 ms]"
        ),
        "client    <... pselect6 resumed>)                 = 1 (in [4], left {…})"
    );
    assert_eq!(
        to_plain("          server    [the same call 3829 more times]"),
        "server    [the same call N more times]"
    );
    assert!(!same("» recv gave up after 206 ms", "» recv gave up after N ms"));
}

#[test]
fn only_blocks_marked_trace_are_read() {
    let readme = "text\n```\nserver    not this\n```\n```trace\nserver    this\n```\n```python\nx\n```\n```trace herd\nchild#1   and this\n```\n";
    let blocks = trace_blocks(readme);
    assert_eq!(
        blocks,
        vec![
            (None, "server    this\n".to_string()),
            (Some("herd".to_string()), "child#1   and this\n".to_string())
        ]
    );
}
