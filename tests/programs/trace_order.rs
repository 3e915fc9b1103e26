//! What the trace promises a reader: no effect printed before its cause, times that never go
//! backwards, each table note once per run, and nothing at all (not even the trace's own
//! closures) when tracing is off.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::util;
use socklab::lessons::LESSONS;
use socklab::trace::{self, Finish, Mode, Spec, notes};

const LIMIT: Duration = Duration::from_secs(30);

/// One line of the human trace: its time, its actor, and the rest.
struct Line {
    seconds: f64,
    actor: String,
    text: String,
}

/// Lesson `number`'s demo in human mode on a pipe (so without colour), line by line; note
/// lines (no time) are left out.
fn human_lines(number: u8) -> Vec<Line> {
    let mut command = Command::new(util::lesson_program(number));
    command.env("SOCKLAB_TRACE", "human").env_remove("NO_COLOR");
    let output = util::run_with_deadline(command, LIMIT);
    assert!(output.status.success(), "lesson {number} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let seconds = words.next()?.strip_prefix('+')?.parse().ok()?;
            let actor = words.next()?.to_string();
            let text = line.splitn(3, char::is_whitespace).nth(2)?.trim_start().to_string();
            Some(Line { seconds, actor, text })
        })
        .collect()
}

/// Where `actor` starts a call whose first line contains `start`.
fn started(lines: &[Line], actor: &str, start: &str) -> usize {
    lines
        .iter()
        .position(|l| l.actor == actor && l.text.contains(start))
        .unwrap_or_else(|| panic!("{actor} never printed {start:?}"))
}

/// Where `actor`'s call named `name` returned `ret` (whole, or its `resumed` half).
fn returned(lines: &[Line], actor: &str, name: &str, ret: &str) -> usize {
    lines
        .iter()
        .position(|l| {
            l.actor == actor
                && (l.text.starts_with(&format!("{name}(")) || l.text.starts_with(&format!("<... {name} resumed>")))
                && !l.text.ends_with("<unfinished ...>")
                && l.text.contains(ret)
        })
        .unwrap_or_else(|| panic!("{actor}'s {name} never returned {ret:?}"))
}

#[test]
fn effects_never_print_before_their_causes_and_times_never_go_backwards() {
    // Three runs: the threads and processes interleave differently each time.
    for _ in 0..3 {
        let lines = human_lines(1);
        for pair in lines.windows(2) {
            assert!(
                pair[0].seconds <= pair[1].seconds,
                "time went backwards: +{} {} then +{} {}",
                pair[0].seconds,
                pair[0].text,
                pair[1].seconds,
                pair[1].text
            );
        }
        // accept4 returns the client's connection: the client's connect was called before.
        assert!(
            started(&lines, "client#1", "connect(3,") < returned(&lines, "server", "accept4", "= 4"),
            "accept4 returned before client#1 called connect"
        );
        // The server receives "Hello World" only after the client called sendto with it.
        assert!(
            started(&lines, "client#1", r#"sendto(3, "Hello World\n""#)
                < returned(&lines, "server", "recvfrom", r#""Hello World\n", 100"#),
            "the server's recvfrom printed the bytes before the client's sendto"
        );
        // And the echo reaches the client after the server sent it.
        assert!(
            started(&lines, "server", r#"sendto(4, "Hello World\n""#)
                < returned(&lines, "client#1", "recvfrom", r#""Hello World\n", 100"#),
            "client#1 received the echo before the server sent it"
        );
    }
}

#[test]
fn each_table_note_prints_once_per_run() {
    // The demo and each named part: a run of its own.
    let runs = LESSONS.iter().flat_map(|lesson| {
        std::iter::once(None)
            .chain(lesson.parts.iter().copied().map(Some))
            .map(move |part| (lesson, part))
    });
    for (lesson, part) in runs {
        let path = util::root()
            .join("lessons")
            .join(lesson.folder())
            .join(lesson.expected_file(part));
        let text = std::fs::read_to_string(&path).expect("reading an expected trace");
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for note in text.lines().filter_map(|l| l.trim_start().strip_prefix("# ")) {
            if notes::is_table_note(note) {
                *seen.entry(note).or_default() += 1;
            }
        }
        // A run that makes calls explains some of them from the table (a part that only
        // narrates measurements, lesson 16's echo part, makes none).
        let makes_calls = text.lines().any(|l| !l.starts_with(' ') && !l.contains("» "));
        assert!(
            !makes_calls || !seen.is_empty(),
            "{}: no table note at all",
            path.display()
        );
        for (note, count) in seen {
            assert_eq!(count, 1, "{}: {note:?} printed {count} times", path.display());
        }
    }
}

#[test]
fn off_makes_the_call_and_runs_nothing_of_the_trace() {
    trace::set_mode(Mode::Off);
    let mut calls = 0;
    let result = trace::syscall(
        &Spec::new("getpid"),
        || panic!("the arguments were built with tracing off"),
        || {
            calls += 1;
            Ok(42)
        },
        |_: &nix::Result<i32>| -> Finish { panic!("the result was rendered with tracing off") },
    );
    assert_eq!((result, calls), (Ok(42), 1));
    let mut staged = false;
    trace::stage(|| staged = true);
    assert!(staged, "a stage's body runs with tracing off");
}
