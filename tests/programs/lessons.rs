//! Every lesson is registered, its folder holds exactly its files, Cargo.toml and the project
//! README agree with the registry, and its demo (and each named part) runs by itself, exits 0
//! and prints, actor by actor, the trace its `expected.trace` (`expected.PART.trace`) shows.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::util;
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
    }
}

/// The files a lesson's folder must hold: its three, a trace for each part, and the Python
/// programs the table names.
fn registered_files(lesson: &socklab::lessons::Lesson) -> BTreeSet<String> {
    ["README.md", "main.rs", "expected.trace"]
        .iter()
        .chain(lesson.python)
        .map(|name| name.to_string())
        .chain(lesson.parts.iter().map(|part| lesson.expected_file(Some(part))))
        .collect()
}

/// The demo (`None`) and each named part of a lesson.
fn runs(lesson: &socklab::lessons::Lesson) -> impl Iterator<Item = Option<&'static str>> {
    std::iter::once(None).chain(lesson.parts.iter().copied().map(Some))
}

#[test]
fn a_lesson_folder_holds_its_files_and_nothing_else() {
    for lesson in LESSONS {
        let folder = util::root().join("lessons").join(lesson.folder());
        let on_disk: BTreeSet<String> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        let wanted = registered_files(lesson);
        let stray: Vec<_> = on_disk.difference(&wanted).collect();
        let missing: Vec<_> = wanted.difference(&on_disk).collect();
        assert!(
            stray.is_empty() && missing.is_empty(),
            "{}: files not in the registry (src/lessons.rs): {stray:?}; registered but missing: {missing:?}",
            lesson.folder()
        );
        for program in lesson.python {
            let text = std::fs::read_to_string(folder.join(program)).unwrap_or_default();
            assert!(
                text.starts_with("#!/usr/bin/env python3\n") && text.len() > 200,
                "{}/{program} is not a Python 3 program with its header",
                lesson.folder()
            );
        }
    }
    // Besides the lesson folders, lessons/ holds only the runner of their Python (make python-N).
    let loose: Vec<String> = std::fs::read_dir(util::root().join("lessons"))
        .expect("reading lessons/")
        .filter_map(|entry| entry.ok())
        .filter(|entry| !entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(loose, ["run_python.py"], "files directly in lessons/");
}

/// `(name, path)` of every `[[example]]` in Cargo.toml, in order.
fn cargo_examples(manifest: &str) -> Vec<(String, String)> {
    let mut examples = Vec::new();
    let mut in_example = false;
    let (mut name, mut path) = (String::new(), String::new());
    for line in manifest.lines().map(str::trim).chain(["[end]"]) {
        if line.starts_with('[') {
            if in_example {
                examples.push((std::mem::take(&mut name), std::mem::take(&mut path)));
            }
            in_example = line == "[[example]]";
        } else if in_example {
            let value = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.trim_start().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            if let Some(v) = value("name") {
                name = v;
            }
            if let Some(v) = value("path") {
                path = v;
            }
        }
    }
    examples
}

#[test]
fn cargo_examples_are_exactly_the_registered_lessons() {
    let manifest = std::fs::read_to_string(util::root().join("Cargo.toml")).expect("reading Cargo.toml");
    let in_cargo = cargo_examples(&manifest);
    let registered: Vec<(String, String)> = LESSONS
        .iter()
        .map(|l| (l.example(), format!("lessons/{}/main.rs", l.folder())))
        .collect();
    assert_eq!(
        in_cargo, registered,
        "Cargo.toml's [[example]] list and the table in src/lessons.rs differ"
    );
}

#[test]
fn the_readme_lesson_table_is_the_registry() {
    let readme = std::fs::read_to_string(util::root().join("README.md")).expect("reading README.md");
    // Rows like `| 01 | [blocking-echo](lessons/01-blocking-echo/) | what you see happen |`;
    // the part headings (`| **II** | ...`) are not lessons.
    let rows: Vec<String> = readme
        .lines()
        .filter(|line| line.len() > 5 && line.starts_with("| ") && line.as_bytes()[2].is_ascii_digit())
        .map(String::from)
        .collect();
    let wanted: Vec<String> = LESSONS
        .iter()
        .map(|l| {
            format!(
                "| {:02} | [{}](lessons/{}/) | {} |",
                l.number,
                l.slug,
                l.folder(),
                l.summary
            )
        })
        .collect();
    assert_eq!(
        rows, wanted,
        "README.md's lesson table and the table in src/lessons.rs differ"
    );
}

#[test]
fn every_demo_prints_its_expected_trace() {
    let failures: Vec<String> = LESSONS
        .iter()
        .filter_map(|lesson| compare_with_expected(lesson, None))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The named parts, apart from the demos, so that the two run side by side.
#[test]
fn every_part_prints_its_expected_trace() {
    let failures: Vec<String> = LESSONS
        .iter()
        .flat_map(|lesson| lesson.parts.iter().map(move |part| (lesson, part)))
        .filter_map(|(lesson, part)| compare_with_expected(lesson, Some(part)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A trace a learner reads whole: at most 200 lines, the demo's and each part's.
#[test]
fn no_expected_trace_is_over_200_lines() {
    for lesson in LESSONS {
        for part in runs(lesson) {
            let path = util::root()
                .join("lessons")
                .join(lesson.folder())
                .join(lesson.expected_file(part));
            let lines = std::fs::read_to_string(&path).unwrap_or_default().lines().count();
            assert!(lines <= 200, "{}: {lines} lines", path.display());
        }
    }
}

/// Runs a lesson's demo, or one of its parts, and compares what it prints with its expected
/// trace, actor by actor: what differs, if anything.
fn compare_with_expected(lesson: &socklab::lessons::Lesson, part: Option<&str>) -> Option<String> {
    let file = lesson.expected_file(part);
    let name = format!("{}/{file}", lesson.folder());
    let mut command = Command::new(util::lesson_program(lesson.number));
    command.args(part).env("SOCKLAB_TRACE", "plain").env_remove("NO_COLOR");
    let output = util::run_with_deadline(command, DEMO_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Some(format!(
            "{name}: exited with {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let expected_path = util::root().join("lessons").join(lesson.folder()).join(&file);
    let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_default();
    let want = expected::by_actor(&expected_text);
    let got = expected::by_actor(&stdout);
    if got.is_empty() || want.is_empty() {
        return Some(format!("{name}: the run or the file holds no trace at all"));
    }
    if want.keys().collect::<Vec<_>>() != got.keys().collect::<Vec<_>>() {
        return Some(format!(
            "{name}: actors differ: expected {:?}, got {:?}",
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        ));
    }
    let regenerate = match part {
        None => format!("make expected-{}", lesson.number),
        Some(part) => format!("make expected-{} ARGS={part}", lesson.number),
    };
    let differences: Vec<String> = want
        .iter()
        .filter_map(|(actor, want_lines)| {
            let got_lines = &got[actor];
            let at = (0..want_lines.len().max(got_lines.len())).find(|&i| want_lines.get(i) != got_lines.get(i))?;
            Some(format!(
                "{name} {actor}: line {} differs\n  expected: {:?}\n  got:      {:?}\n(regenerate with `{regenerate}` only if the change is intended)",
                at + 1,
                want_lines.get(at),
                got_lines.get(at),
            ))
        })
        .collect();
    (!differences.is_empty()).then(|| differences.join("\n\n"))
}

#[test]
fn notes_follow_the_calls_they_explain() {
    // A note line must come right after a call line: by_actor relies on it, and so does a reader.
    for lesson in LESSONS {
        for part in runs(lesson) {
            let path = util::root()
                .join("lessons")
                .join(lesson.folder())
                .join(lesson.expected_file(part));
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
}
