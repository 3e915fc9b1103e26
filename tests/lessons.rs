//! Every lesson is registered, has its three files, and its demo runs by itself, exits 0 and
//! prints, actor by actor, the trace its `expected.trace` shows.

mod util;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use socklab::lessons::LESSONS;
use socklab::trace::expected;

/// A demo finishes in a few seconds; this is the limit before it counts as hung.
const DEMO_LIMIT: Duration = Duration::from_secs(30);

#[test]
fn every_folder_is_registered_and_every_lesson_has_its_files() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(util::root().join("lessons"))
        .expect("reading lessons/")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let registered: BTreeSet<String> = LESSONS.iter().map(|l| l.folder()).collect();
    assert_eq!(
        on_disk, registered,
        "lessons/ folders and the table in src/lessons.rs differ"
    );

    let manifest = std::fs::read_to_string(util::root().join("Cargo.toml")).expect("reading Cargo.toml");
    for (index, lesson) in LESSONS.iter().enumerate() {
        assert_eq!(
            usize::from(lesson.number),
            index + 1,
            "lessons are numbered 1, 2, 3... in order"
        );
        for file in ["README.md", "main.rs", "expected.trace"] {
            let path = util::root().join("lessons").join(lesson.folder()).join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(text.trim().len() > 100, "{} is missing or nearly empty", path.display());
        }
        let entry = format!(
            "name = \"{}\"\npath = \"lessons/{}/main.rs\"",
            lesson.example(),
            lesson.folder()
        );
        assert!(
            manifest.contains(&entry),
            "Cargo.toml lacks the [[example]] for {}",
            lesson.folder()
        );
    }
}

#[test]
fn every_demo_prints_its_expected_trace() {
    let mut failures = Vec::new();
    for lesson in LESSONS {
        let mut command = Command::new(util::lesson_program(lesson.number));
        command.env("SOCKLAB_TRACE", "plain").env_remove("NO_COLOR");
        let output = util::run_with_deadline(command, DEMO_LIMIT);
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            failures.push(format!(
                "{}: exited with {}\nstderr: {}",
                lesson.folder(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        }
        let expected_path = util::root()
            .join("lessons")
            .join(lesson.folder())
            .join("expected.trace");
        let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let want = expected::by_actor(&expected_text);
        let got = expected::by_actor(&stdout);
        if got.is_empty() || want.is_empty() {
            failures.push(format!(
                "{}: the demo or expected.trace holds no trace at all",
                lesson.folder()
            ));
            continue;
        }
        if want.keys().collect::<Vec<_>>() != got.keys().collect::<Vec<_>>() {
            failures.push(format!(
                "{}: actors differ: expected {:?}, got {:?}",
                lesson.folder(),
                want.keys().collect::<Vec<_>>(),
                got.keys().collect::<Vec<_>>()
            ));
            continue;
        }
        for (actor, want_lines) in &want {
            let got_lines = &got[actor];
            if let Some(at) =
                (0..want_lines.len().max(got_lines.len())).find(|&i| want_lines.get(i) != got_lines.get(i))
            {
                failures.push(format!(
                    "{} {actor}: line {} differs\n  expected: {:?}\n  got:      {:?}\n(regenerate with `make expected-{}` only if the change is intended)",
                    lesson.folder(),
                    at + 1,
                    want_lines.get(at),
                    got_lines.get(at),
                    lesson.number
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn notes_follow_the_calls_they_explain() {
    // A note line must come right after a call line: by_actor relies on it, and so does a reader.
    for lesson in LESSONS {
        let path = util::root()
            .join("lessons")
            .join(lesson.folder())
            .join("expected.trace");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut previous_was_call = false;
        for line in text.lines() {
            let is_note = line.trim_start().starts_with("# ");
            assert!(
                !is_note || previous_was_call,
                "{}: a note without a call above it: {line}",
                path.display()
            );
            previous_was_call = !line.starts_with(' ') && !line.contains("» ");
        }
    }
}
