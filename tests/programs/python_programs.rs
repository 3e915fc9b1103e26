//! Every lesson's Python programs (`make python-N`, `lessons/run_python.py`) run under the real
//! `strace -f`, and make the system calls their lesson's README says they make.
//!
//! The claims are the README's own: its "Run the seed's Python" part holds a fenced block
//! marked `python-strace`, one claim a line:
//!
//! - `PROGRAM  CALL`: a call that program made (any of its processes and threads), as strace
//!   prints it; the block's calls for one program must appear in that order. In CALL, `PORT`,
//!   `PID` and `N` stand for any number, `0xADDR` for any address, `…` for anything at all, and
//!   runs of spaces count as one (strace pads before ` = `).
//! - `PROGRAM  never TEXT`: no call of that program contains TEXT.
//!
//! Each program is told apart by the `execve` that started it (the runner starts each one with
//! `python3 -u NAME.py`); a forked child or a thread belongs to the program of its parent. Every
//! program the lesson registers must have run and be named in the block. The test also checks
//! that the demo ended well: a few lines each lesson's programs must print.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::util;
use socklab::lessons::LESSONS;

/// The calls strace reports: what the READMEs speak of, and what tells processes apart
/// (clock_gettime: a README may say a program reads the clock without entering the kernel).
const TRACED: &str = "socket,socketpair,bind,listen,accept,accept4,connect,getsockname,getpeername,\
setsockopt,getsockopt,shutdown,sendto,recvfrom,sendmsg,recvmsg,close,read,ioctl,fcntl,poll,ppoll,\
select,pselect6,epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,rt_sigaction,prlimit64,clone,clone3,\
fork,vfork,execve,wait4,clock_gettime,unlink";

/// The runner gives up on a demo after 60 s; this is the limit for strace and the runner together.
/// (With `--seccomp-bpf` strace kills its tracees when it is killed: nothing is left running.)
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn lesson_01_python() {
    check(1, &["client#1  b'Hello World\\n'", "client#2  b'Hello World\\n'"]);
}

#[test]
fn lesson_02_python() {
    check(
        2,
        &[
            "no answer within 0.3 s",
            "[Errno 111] Connection refused",
            "client#2  b'Hello World\\n'",
        ],
    );
}

#[test]
fn lesson_03_python() {
    check(3, &["accept: remhost = '127.0.0.1'", "IPv6 accept: ('::1'"]);
}

#[test]
fn lesson_04_python() {
    check(
        4,
        &[
            "b'thank you for connecting'",
            "OSError: [Errno 98] Address already in use",
            "recv gave up: TimeoutError timed out",
        ],
    );
}

#[test]
fn lesson_05_python() {
    check(
        5,
        &[
            "] b'World'",
            "with a timeout sendall returned; after the half-close the answer still arrives",
        ],
    );
}

#[test]
fn lesson_06_python() {
    check(6, &["server receive your messages, good bye.", "i'm die, bye bye~"]);
}

#[test]
fn lesson_07_python() {
    check(
        7,
        &[
            "b\"[",
            "OSError: [Errno 9] Bad file descriptor",
            "BrokenPipeError: [Errno 32] Broken pipe",
        ],
    );
}

#[test]
fn lesson_08_python() {
    check(
        8,
        &[
            "accept with nobody waiting: BlockingIOError EAGAIN",
            "connect_ex: EINPROGRESS",
            "accept with nobody waiting: TimeoutError timed out",
        ],
    );
}

#[test]
fn lesson_09_python() {
    check(
        9,
        &[
            "reader    hello from the keyboard",
            "b'220 hello on your second socket\\n'",
            "Five seconds elapsed.",
        ],
    );
}

#[test]
fn lesson_10_python() {
    check(10, &["received b'in parts.'", "Close."]);
}

#[test]
fn lesson_11_python() {
    check(11, &["say: hello, room", "say: hi ada", "ByeBye~~"]);
}

#[test]
fn lesson_12_python() {
    check(
        12,
        &["select([1024]): ValueError", "poll: [(1024, 1)]", "epoll: [(1024, 1)]"],
    );
}

#[test]
fn lesson_13_python() {
    check(13, &["echo: b'one more\\n'", "after reading no data (its FIN)"]);
}

#[test]
fn lesson_14_python() {
    check(14, &["read b'efgh'", "echo: b'abcdefghi\\n'"]);
}

#[test]
fn lesson_15_python() {
    check(15, &["echoed back: 20000 bytes", "then end of file"]);
}

#[test]
fn lesson_16_python() {
    check(16, &["N =    10: select", "N = 10000: poll", "epoll: N = 10000 costs"]);
}

#[test]
fn lesson_17_python() {
    check(
        17,
        &[
            "server      closing (end of file)",
            "server      closing (said nothing for 0.5 s)",
            "client#2    the server closed the connection",
            "server    shutting down",
        ],
    );
}

#[test]
fn lesson_18_python() {
    check(
        18,
        &[
            "worker#1: fd 3 is socket:[",
            "client#2: the server is pid",
            "datagrams queued, then EAGAIN",
            "after the receiver closed: ECONNREFUSED",
        ],
    );
}

#[test]
fn lesson_19_python() {
    check(
        19,
        &[
            "accept() returned a connection; the handler ran 1 time(s) meanwhile",
            "SIGTERM stopped the loop; the client heard [b'hello\\n', b'server: stopping, goodbye (SIGTERM)\\n']",
            "asyncio stopped by SIGINT",
        ],
    );
}

/// Runs lesson `number`'s Python under strace and checks its README's claims and `printed`.
fn check(number: u8, printed: &[&str]) {
    util::require("strace");
    let lesson = LESSONS
        .iter()
        .find(|lesson| lesson.number == number)
        .expect("a registered lesson");
    let folder = util::root().join("lessons").join(lesson.folder());
    let readme = std::fs::read_to_string(folder.join("README.md")).expect("reading the README");
    let claims = claims(&readme).unwrap_or_else(|e| panic!("{}/README.md: {e}", lesson.folder()));

    let log = std::env::temp_dir().join(format!("socklab-python-{number:02}-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        .args(["-f", "--seccomp-bpf", "-qq", "-e", &format!("trace={TRACED}"), "-o"])
        .arg(&log)
        .arg(python())
        .arg(util::root().join("lessons").join("run_python.py"))
        .arg(number.to_string());
    let output = util::run_with_deadline(command, LIMIT);
    let strace_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !shown.contains("» stuck"),
        "make python-{number} failed ({}):\n{shown}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for line in printed {
        assert!(
            shown.contains(line),
            "make python-{number} never printed {line:?}:\n{shown}"
        );
    }

    let calls = calls_by_program(&strace_text);
    for program in lesson.python {
        assert!(
            calls.get(*program).is_some_and(|lines| !lines.is_empty()),
            "{program} (registered for lesson {number}) never ran under make python-{number}"
        );
        assert!(
            claims.iter().any(|claim| claim.program == *program),
            "{}/README.md claims nothing about {program}",
            lesson.folder()
        );
    }
    let mut failures = Vec::new();
    let mut position: BTreeMap<&str, usize> = BTreeMap::new();
    for claim in &claims {
        assert!(
            lesson.python.contains(&claim.program.as_str()),
            "{}/README.md speaks of {}, which is not one of the lesson's programs {:?}",
            lesson.folder(),
            claim.program,
            lesson.python
        );
        let lines = calls.get(claim.program.as_str()).map(Vec::as_slice).unwrap_or_default();
        if claim.never {
            if let Some(line) = lines.iter().find(|line| line.contains(&claim.pattern)) {
                failures.push(format!("{}: never {:?}, but: {line}", claim.program, claim.pattern));
            }
            continue;
        }
        let from = position.entry(&claim.program).or_default();
        match lines[*from..].iter().position(|line| matches(&claim.pattern, line)) {
            Some(found) => *from += found + 1,
            None => failures.push(format!(
                "{}: no {:?}{}",
                claim.program,
                claim.pattern,
                if *from > 0 { " after the claims above it" } else { "" }
            )),
        }
    }
    if !failures.is_empty() {
        // What strace did show of the same calls, for each claim that failed (bounded).
        let mut shown = Vec::new();
        for claim in claims
            .iter()
            .filter(|c| failures.iter().any(|f| f.contains(&format!("{:?}", c.pattern))))
        {
            let name = claim.pattern.split('(').next().unwrap_or_default();
            let lines = calls.get(&claim.program).map(Vec::as_slice).unwrap_or_default();
            shown.extend(
                lines
                    .iter()
                    .filter(|line| line.starts_with(name) || (claim.never && line.contains(&claim.pattern)))
                    .take(40)
                    .map(|line| format!("{}  {line:.240}", claim.program)),
            );
        }
        shown.dedup();
        panic!(
            "lesson {number}: claims in its README that strace did not show:\n  {}\n\nwhat strace showed of those calls:\n{}",
            failures.join("\n  "),
            shown.join("\n")
        );
    }
}

/// The interpreter itself, not a wrapper script in front of it (pyenv's shim is a shell script,
/// and strace -f would follow it too).
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        util::require("python3");
        let output = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("running python3");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// One line of a README's `python-strace` block.
#[derive(Debug)]
struct Claim {
    program: String,
    never: bool,
    pattern: String,
}

/// The claims in the README's `python-strace` block.
fn claims(readme: &str) -> Result<Vec<Claim>, String> {
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|line| line.trim() != "```python-strace")
        .skip(1)
        .take_while(|line| line.trim() != "```")
        .filter(|line| !line.trim().is_empty())
        .collect();
    if block.is_empty() {
        return Err("no ```python-strace block, or an empty one".into());
    }
    block
        .iter()
        .map(|line| {
            let (program, rest) = line
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("a claim is `PROGRAM  CALL`: {line:?}"))?;
            let rest = rest.trim();
            let (never, pattern) = match rest.strip_prefix("never ") {
                Some(text) => (true, text.trim()),
                None => (false, rest),
            };
            Ok(Claim {
                program: program.to_string(),
                never,
                pattern: squeeze(pattern),
            })
        })
        .collect()
}

/// strace's lines, joined where a call was cut in two, grouped by the program that made them.
fn calls_by_program(strace_text: &str) -> BTreeMap<String, Vec<String>> {
    // strace -f -o: `PID call...`; a call cut by another's line ends in ` <unfinished ...>` and
    // goes on in a later `PID <... name resumed>rest`.
    let mut pending: BTreeMap<&str, String> = BTreeMap::new();
    let mut joined: Vec<(&str, String)> = Vec::new();
    for line in strace_text.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if let Some(start) = call.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, start.to_string());
        } else if let Some(rest) = call.strip_prefix("<... ") {
            let rest = rest.split_once(" resumed>").map_or(rest, |(_, after)| after);
            let start = pending.remove(pid).unwrap_or_default();
            joined.push((pid, squeeze(&format!("{start}{rest}"))));
        } else {
            joined.push((pid, squeeze(call)));
        }
    }
    // A call still open when strace ended (its process killed in it) counts as it began.
    joined.extend(pending.into_iter().map(|(pid, start)| (pid, squeeze(&start))));
    // Who started whom: `clone(...) = 1234`, `clone3(...) = 1234`, `vfork() = 1234`.
    let mut parent: BTreeMap<String, &str> = BTreeMap::new();
    for (pid, call) in &joined {
        let starts_child = ["clone(", "clone3(", "vfork(", "fork("]
            .iter()
            .any(|name| call.starts_with(name));
        if let (true, Some((_, child))) = (starts_child, call.rsplit_once(" = ")) {
            parent.insert(child.to_string(), pid);
        }
    }
    let mut program: BTreeMap<&str, String> = BTreeMap::new();
    let mut by_program: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pid, call) in &joined {
        if !program.contains_key(pid) {
            let inherited = parent
                .get(*pid)
                .and_then(|p| program.get(p))
                .cloned()
                .unwrap_or_else(|| "run_python.py".to_string());
            program.insert(pid, inherited);
        }
        if call.starts_with("execve(") && call.ends_with(" = 0") {
            // The first argument that names a .py file: `python3 -u seed_server.py 40123`.
            if let Some(script) = call
                .split('"')
                .find(|piece| piece.ends_with(".py"))
                .map(|path| path.rsplit('/').next().unwrap_or(path).to_string())
            {
                program.insert(pid, script);
            }
        }
        by_program.entry(program[pid].clone()).or_default().push(call.clone());
    }
    by_program
}

/// Runs of spaces as one space, ends trimmed.
fn squeeze(text: &str) -> String {
    text.split(' ')
        .filter(|piece| !piece.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One piece of a claim's pattern.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// `PORT`, `PID`, `N`: one or more digits.
    Number,
    /// `0xADDR`: `0x` and hex digits.
    Address,
    /// `…`: anything, possibly nothing.
    Anything,
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        // A placeholder is a whole word: CLONE_PIDFD's `PID` is text.
        let word_before = text
            .chars()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == '_');
        let placeholder = [
            ("…", None),
            ("0xADDR", Some(Piece::Address)),
            ("PORT", Some(Piece::Number)),
            ("PID", Some(Piece::Number)),
            ("N", Some(Piece::Number)),
        ]
        .into_iter()
        .find(|(word, _)| {
            rest.starts_with(word)
                && (*word == "…"
                    || (!word_before
                        && !rest[word.len()..]
                            .chars()
                            .next()
                            .is_some_and(|a| a.is_ascii_alphanumeric() || a == '_')))
        });
        match placeholder {
            Some((word, piece)) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece.unwrap_or(Piece::Anything));
                rest = &rest[word.len()..];
            }
            None => {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// Whether `line` is the whole of `pattern` (see the module's doc for the placeholders).
fn matches(pattern: &str, line: &str) -> bool {
    fn rest_matches(pieces: &[Piece], line: &str) -> bool {
        let Some((first, others)) = pieces.split_first() else {
            return line.is_empty();
        };
        match first {
            Piece::Text(text) => line
                .strip_prefix(text.as_str())
                .is_some_and(|rest| rest_matches(others, rest)),
            Piece::Number | Piece::Address => {
                let (prefix, digit): (&str, fn(char) -> bool) = match first {
                    Piece::Number => ("", |c| c.is_ascii_digit()),
                    _ => ("0x", |c| c.is_ascii_hexdigit()),
                };
                let Some(after) = line.strip_prefix(prefix) else {
                    return false;
                };
                let length = after.find(|c: char| !digit(c)).unwrap_or(after.len());
                // Greedy is enough: a number is never followed by another digit in a pattern.
                length > 0 && rest_matches(others, &after[length..])
            }
            Piece::Anything => line
                .char_indices()
                .map(|(at, _)| at)
                .chain([line.len()])
                .any(|at| rest_matches(others, &line[at..])),
        }
    }
    rest_matches(&pieces(pattern), line)
}

#[test]
fn patterns_match_what_they_say() {
    let accept = "accept4(3, {sa_family=AF_INET, sin_port=htons(40123), sin_addr=inet_addr(\"127.0.0.1\")}, [16], SOCK_CLOEXEC) = 4";
    assert!(matches(
        "accept4(3, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, [16], SOCK_CLOEXEC) = 4",
        accept
    ));
    assert!(matches("accept4(3, …) = 4", accept));
    assert!(!matches("accept4(3, …) = 5", accept), "the whole line, not a prefix");
    assert!(!matches("accept4(3, …, [128 => 16], …) = 4", accept));
    assert!(matches(
        "recvfrom(5, 0xADDR, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)",
        "recvfrom(5, 0x5628addd52b0, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)"
    ));
    assert!(matches(
        "wait4(PID, …, WNOHANG, NULL) = 0",
        "wait4(823, 0x7ffdd78fb2bc, WNOHANG, NULL) = 0"
    ));
    assert!(matches(
        "sendto(4, \"x\"..., N, 0, NULL, 0) = N",
        "sendto(4, \"x\"..., 245760, 0, NULL, 0) = 12288"
    ));
    assert_eq!(pieces("CLONE_PIDFD"), [Piece::Text("CLONE_PIDFD".into())]);
    assert_eq!(
        pieces("NULL, N)"),
        [Piece::Text("NULL, ".into()), Piece::Number, Piece::Text(")".into())]
    );
}

#[test]
fn strace_lines_are_joined_and_told_apart_by_program() {
    let log = "\
100 execve(\"/usr/bin/python3\", [\"/usr/bin/python3\", \"lessons/run_python.py\", \"1\"], 0x7ffe /* 39 vars */) = 0
100 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3
100 vfork( <unfinished ...>
101 execve(\"/usr/bin/python3\", [\"/usr/bin/python3\", \"-u\", \"seed_server.py\", \"40123\"], 0x7f /* 40 vars */ <unfinished ...>
100 <... vfork resumed>)              = 101
101 <... execve resumed>)             = 0
101 accept4(3,  <unfinished ...>
102 connect(3, {sa_family=AF_INET}, 16) = 0
101 <... accept4 resumed>{sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 4
101 clone3({flags=CLONE_VM|CLONE_THREAD} => {parent_tid=[103]}, 88) = 103
103 recvfrom(4, \"hi\", 1024, 0, NULL, NULL) = 2
";
    let calls = calls_by_program(log);
    assert_eq!(
        calls["run_python.py"][1],
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3"
    );
    let server = &calls["seed_server.py"];
    assert_eq!(server[1], "accept4(3, {sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 4");
    assert_eq!(
        server.last().map(String::as_str),
        Some("recvfrom(4, \"hi\", 1024, 0, NULL, NULL) = 2"),
        "a thread's calls are its program's"
    );
    assert!(
        calls["run_python.py"].iter().any(|c| c.starts_with("connect(")),
        "pid 102's parent is unknown: the runner's"
    );
}
