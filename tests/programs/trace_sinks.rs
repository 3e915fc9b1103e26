//! The trace's sinks do what the README says: colour only on a terminal and only without
//! NO_COLOR, JSON lines that parse field by field, and nothing at all when off.

use crate::util;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Lesson 01's demo with `env` set; with `terminal`, under `script`, which gives it a pty.
fn demo_output(env: &[(&str, &str)], terminal: bool) -> String {
    let program = util::lesson_program(1);
    let mut command = if terminal {
        util::require("script");
        let mut command = Command::new("script");
        command.args(["-qec", &program.display().to_string(), "/dev/null"]);
        command
    } else {
        Command::new(program)
    };
    command.env_remove("NO_COLOR").env_remove("SOCKLAB_TRACE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = util::run_with_deadline(command, LIMIT);
    assert!(
        output.status.success(),
        "the demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_terminal_gets_colour() {
    let text = demo_output(&[], true);
    assert!(text.contains("\x1b["), "no ANSI colour on a terminal:\n{text}");
    assert!(text.contains("listen(3, 5)"));
}

#[test]
fn no_color_turns_colour_off_even_on_a_terminal() {
    let text = demo_output(&[("NO_COLOR", "1")], true);
    assert!(!text.contains("\x1b["), "colour despite NO_COLOR:\n{text}");
    assert!(text.contains("listen(3, 5)"));
}

#[test]
fn a_pipe_gets_no_colour() {
    let text = demo_output(&[], false);
    assert!(!text.contains("\x1b["));
    assert!(text.contains("listen(3, 5)"));
}

#[test]
fn json_is_one_object_per_line_with_the_strace_line_in_it() {
    let text = demo_output(&[("SOCKLAB_TRACE", "json")], false);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 10);
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
        assert!(line.contains("\"actor\":") && line.contains("\"pid\":"), "{line}");
    }
    let listen = lines
        .iter()
        .find(|l| l.contains("\"syscall\":\"listen\""))
        .expect("a listen record");
    assert!(
        listen.contains(r#""line":"listen(3, 5)                            = 0""#),
        "{listen}"
    );
    assert!(
        listen.contains(r#""ret":"0""#) && listen.contains(r#""errno":null"#),
        "{listen}"
    );
}

#[test]
fn off_prints_nothing() {
    assert_eq!(demo_output(&[("SOCKLAB_TRACE", "off")], false), "");
}
