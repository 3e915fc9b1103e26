//! Our trace tells the truth: lessons run under the real `strace -f`, and for every
//! thread the syscalls strace saw, from that thread's first traced call on, are the lines our
//! trace printed, with the same arguments and results, in the same order.
//!
//! Values that differ between the two views by nature are normalised on both sides: pointer
//! addresses. (pselect6's `left {…}` is not: socklab makes that call itself, as glibc does, and
//! prints the kernel's own nanoseconds.) Our trace folds identical calls in a row into one record with `"repeat": N`; here it stands for
//! the N calls again. Left out of strace's side, and nothing else:
//! - the trace's own writes to stdout and stderr (the demo's records to its collector);
//! - on a thread, everything between a stage's begin and end markers (`write(1,
//!   "\36stage-begin…")` and `write(1, "\36stage-end…")`): plumbing the lesson hides with
//!   `trace::stage`, such as starting client processes or getaddrinfo's own calls;
//! - the runtime's start-up (before the thread's first traced call) and its exit_group, and
//!   the `rt_sigprocmask(SIG_BLOCK, ~[RT_1], NULL, 8)` with which glibc ends a thread;
//! - calls strace shows as `= ? ERESTART…`, restarted by the kernel without the program seeing
//!   (by a stop of strace's own, or after a handler installed with SA_RESTART);
//! - what a signal handler does: the lines between a `--- SIGNAL … ---` line for a signal that
//!   some rt_sigaction gave a handler and the thread's next `rt_sigreturn`. A handler may make
//!   only async-signal-safe calls, and recording one is not (it allocates, takes locks), so
//!   our trace cannot show them. The `rt_sigreturn` itself is left out too, but it says what
//!   became of a call the signal interrupted (`= ? ERESTART…`): `-1 EINTR` is what the program
//!   saw; anything else, and the kernel restarts the call (SA_RESTART), as above;
//! - std's wait4 for a demo's client processes, outside a stage;
//! - the result of the call in which a process was killed by a signal: we print `= ?` (it never
//!   returned to the program), strace the result the kernel had when the signal struck.

use crate::util;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// The calls a lesson makes through `socklab::sys`, by the kernel's names.
const TRACED: &str = "socket,socketpair,bind,listen,accept4,connect,getsockname,getpeername,setsockopt,\
getsockopt,shutdown,close,sendto,recvfrom,sendmsg,recvmsg,unlink,read,write,fcntl,pselect6,poll,epoll_create1,\
epoll_ctl,epoll_wait,dup,rt_sigaction,clone,wait4,exit_group,prlimit64,pipe2,rt_sigprocmask,kill,signalfd4,ppoll,\
epoll_pwait,setitimer,rt_sigreturn";

#[test]
fn lesson_01_trace_matches_strace() {
    compare_with_strace(1, 2);
}

#[test]
fn lesson_02_trace_matches_strace() {
    compare_with_strace(2, 2);
}

/// One thread, and getaddrinfo's own calls (reading /etc/hosts, sorting answers on UDP
/// sockets) in stages.
#[test]
fn lesson_03_trace_matches_strace() {
    compare_with_strace(3, 1);
}

#[test]
fn lesson_04_trace_matches_strace() {
    compare_with_strace(4, 2);
}

#[test]
fn lesson_05_trace_matches_strace() {
    compare_with_strace(5, 2);
}

#[test]
fn lesson_06_trace_matches_strace() {
    compare_with_strace(6, 2);
}

#[test]
fn lesson_11_trace_matches_strace() {
    compare_with_strace(11, 2);
}

/// The server, the client process, and two forked children that abort (the libc crate's
/// FD_SET, glibc's __fdelt_chk) before making a traced call; descriptors moved to 1023, 1024
/// and 1500 by fcntl(F_DUPFD_CLOEXEC), and pselect6 with a 2,048-bit set.
#[test]
fn lesson_12_trace_matches_strace() {
    compare_with_strace(12, 2);
}

#[test]
fn lesson_13_trace_matches_strace() {
    compare_with_strace(13, 2);
}

/// The demo forks each server; the forking server forks a child per connection; the
/// threading server starts a thread per connection.
#[test]
fn lesson_07_trace_matches_strace() {
    compare_with_strace(7, 10);
}

/// The master, four workers blocked in accept4, four clients.
#[test]
fn lesson_07_prefork_trace_matches_strace() {
    compare_run_with_strace(7, &["prefork"], 9);
}

/// The master, four pollers, a client; the master's control lines to the pollers are staged.
#[test]
fn lesson_07_herd_trace_matches_strace() {
    compare_run_with_strace(7, &["herd"], 6);
}

/// The server and four clients; its /proc readings are staged.
#[test]
fn lesson_07_backlog_trace_matches_strace() {
    compare_run_with_strace(7, &["backlog"], 5);
}

/// The server, client#1 and client#2; the server's busy-poll is hundreds of identical
/// recvfrom calls, one record with `"repeat": N` in our trace.
#[test]
fn lesson_08_trace_matches_strace() {
    compare_with_strace(8, 3);
}

/// The reader (listing 14, its stdin a pipe the demo types into, staged), the server thread
/// and listing 15's client: pselect6 lines verbatim, `left {…}` in the kernel's nanoseconds.
#[test]
fn lesson_09_trace_matches_strace() {
    compare_with_strace(9, 3);
}

/// The server thread's select loop and three client processes; the keyboard that types into
/// the clients' stdin, and waits for the server's loop through /proc, is staged.
#[test]
fn lesson_10_trace_matches_strace() {
    compare_with_strace(10, 4);
}

/// The level-triggered server and its client; the server's reads of /proc/self/fdinfo are staged.
#[test]
fn lesson_14_trace_matches_strace() {
    compare_with_strace(14, 2);
}

/// The edge-triggered server and its client: EAGAIN ending each drain, /proc/self/fdinfo read in a stage.
#[test]
fn lesson_15_trace_matches_strace() {
    compare_with_strace(15, 2);
}

/// The master and its eight forked children; their private lines and the master's /proc
/// readers are stage machinery.
#[test]
fn lesson_15_herd_trace_matches_strace() {
    compare_run_with_strace(15, &["herd"], 9);
}

/// One thread; the measured waits, the other descriptors' set-up and the echo servers (forked
/// processes under load) are all staged, and only their narration prints.
#[test]
fn lesson_16_trace_matches_strace() {
    compare_with_strace(16, 1);
}

/// The reactor's server thread (epoll_wait with a timer's timeout, handlers' calls, a registration
/// closed mid-dispatch) and two client processes.
#[test]
fn lesson_17_trace_matches_strace() {
    compare_with_strace(17, 3);
}

/// The listener, two forked workers and two client processes: sendmsg's and recvmsg's SCM_RIGHTS
/// headers, SO_PEERCRED, AF_UNIX names (a path, an abstract one) and unlink, as strace prints them.
#[test]
fn lesson_18_trace_matches_strace() {
    compare_with_strace(18, 5);
}

/// One process, two threads: a handler with and without SA_RESTART (accept4 restarted, then
/// EINTR), select/poll/epoll_wait interrupted, the race and pselect6/ppoll/epoll_pwait with a
/// mask, the self-pipe (its handler's write is the handler's, left out) and a signalfd.
#[test]
fn lesson_19_trace_matches_strace() {
    compare_with_strace(19, 2);
}

/// Runs `lesson`'s demo under strace and compares, thread by thread; at least `threads` of
/// them (the server's and the clients') must have made traced calls.
fn compare_with_strace(lesson: u8, threads: usize) {
    compare_run_with_strace(lesson, &[], threads);
}

/// [`compare_with_strace`] for the lesson run with `args` (a named part: `herd`).
fn compare_run_with_strace(lesson: u8, args: &[&str], threads: usize) {
    util::require("strace");
    let log = std::env::temp_dir().join(format!(
        "socklab-strace-{lesson:02}{}-{}.txt",
        args.join("-"),
        std::process::id()
    ));
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", &format!("trace={TRACED}"), "-o"])
        .arg(&log)
        .arg(util::lesson_program(lesson))
        .args(args)
        .env("SOCKLAB_TRACE", "json");
    let output = util::run_with_deadline(command, Duration::from_secs(60));
    let strace_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        output.status.success(),
        "lesson {lesson} under strace failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let ours = our_lines_by_thread(&String::from_utf8_lossy(&output.stdout));
    let theirs = strace_lines_by_thread(&strace_text);
    let killed = killed_by_a_signal(&strace_text);
    assert!(
        ours.len() >= threads,
        "lesson {lesson} printed calls from {} thread(s); expected at least {threads}",
        ours.len()
    );
    for (tid, our_lines) in &ours {
        let their_lines = theirs
            .get(tid)
            .unwrap_or_else(|| panic!("strace saw no calls from thread {tid}"));
        let start = their_lines
            .iter()
            .position(|line| *line == our_lines[0])
            .unwrap_or_else(|| {
                panic!(
                    "thread {tid}: strace never printed our first line {:?}\nstrace: {their_lines:#?}",
                    our_lines[0]
                )
            });
        let mut their_rest: Vec<String> = outside_stages(&their_lines[start..])
            .into_iter()
            // Writes to stdout and stderr are the trace itself being printed.
            .filter(|line| !line.starts_with("write(1,") && !line.starts_with("write(2,"))
            // A demo waits for its client processes through std's Child::wait, which is
            // plumbing, not the lesson: only the wait4 calls our trace shows are compared.
            .filter(|line| !line.starts_with("wait4(") || our_lines.contains(line))
            .collect();
        let mut our_lines = our_lines.clone();
        // A process killed inside a call (SIGPIPE in lesson 06): the call never returned to
        // the program, so our line ends `= ?`; strace knows what the kernel returned.
        let last = our_lines.len() - 1;
        if killed.contains(tid) {
            if let (Some(ours), Some(theirs)) = (our_lines.last_mut(), their_rest.get(last)) {
                if let (Some(call), Some((their_call, _))) = (ours.strip_suffix(" = ?"), theirs.rsplit_once(" = ")) {
                    if call == their_call {
                        *ours = theirs.clone();
                    }
                }
            }
        }
        // A process that returns from main exits through the runtime, not through sys::exit;
        // a thread that returns ends in glibc, which first blocks every signal it can.
        while their_rest.len() > our_lines.len()
            && their_rest.last().is_some_and(|l| {
                l.starts_with("exit_group(") || l.starts_with("rt_sigprocmask(SIG_BLOCK, ~[RT_1], NULL, 8)")
            })
        {
            their_rest.pop();
        }
        assert_eq!(
            our_lines, their_rest,
            "thread {tid}: our trace (left) and strace (right) differ"
        );
        assert!(
            our_lines.len() >= 3,
            "thread {tid}: too few calls to be a meaningful comparison"
        );
    }
}

/// Whitespace runs become one space (strace pads `=` to a column counted from its pid
/// prefix); pointers become a word.
fn normalise(line: &str) -> String {
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("0x") {
        let after = &rest[at + 2..];
        out.push_str(&rest[..at]);
        // Our own placeholder for a pointer we cannot know, or a real pointer.
        if let Some(tail) = after.strip_prefix("ADDR") {
            out.push_str("ADDR");
            rest = tail;
            continue;
        }
        let digits = after.chars().take_while(char::is_ascii_hexdigit).count();
        out.push_str(if digits >= 6 {
            "ADDR"
        } else {
            &rest[at..at + 2 + digits]
        });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// On one thread's strace lines: everything between a stage's begin and end markers is left
/// out (the markers too).
fn outside_stages(lines: &[String]) -> Vec<String> {
    let mut depth = 0usize;
    let mut kept = Vec::new();
    for line in lines {
        if line.starts_with(r#"write(1, "\36stage-begin"#) {
            depth += 1;
        } else if line.starts_with(r#"write(1, "\36stage-end"#) {
            depth = depth.saturating_sub(1);
        } else if depth == 0 {
            kept.push(line.clone());
        }
    }
    kept
}

/// Our JSON lines, grouped by thread id: the `tid` and `line` fields of each call record, a
/// record with `"repeat": N` standing for N more calls with its line.
fn our_lines_by_thread(json: &str) -> BTreeMap<u32, Vec<String>> {
    let mut threads: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for record in json.lines() {
        let (Some(tid), Some(line)) = (number_field(record, "tid"), string_field(record, "line")) else {
            continue;
        };
        let times = number_field(record, "repeat").unwrap_or(1);
        let lines = threads.entry(tid).or_default();
        for _ in 0..times {
            lines.push(normalise(&line));
        }
    }
    threads
}

/// strace's log (`-o`: every line starts with the thread id), with `<unfinished ...>` and
/// `<... resumed>` pieces joined back into one line per call.
fn strace_lines_by_thread(log: &str) -> BTreeMap<u32, Vec<String>> {
    let handled = handled_signals(log);
    let mut threads: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut pending: BTreeMap<u32, String> = BTreeMap::new();
    let mut restarted: BTreeMap<u32, String> = BTreeMap::new();
    // Per thread: how many handlers it is running (a second signal may interrupt the first).
    let mut in_handler: BTreeMap<u32, usize> = BTreeMap::new();
    for raw in log.lines() {
        let Some((tid, rest)) = raw.split_once(' ') else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if let Some(signal) = rest.strip_prefix("--- ") {
            if signal
                .split_whitespace()
                .next()
                .is_some_and(|name| handled.contains(name))
            {
                *in_handler.entry(tid).or_default() += 1;
            }
            continue;
        }
        if rest.starts_with("+++") {
            continue;
        }
        let whole = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(tid, head.to_string());
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{tail}", pending.remove(&tid).unwrap_or_default())
        } else {
            rest.to_string()
        };
        if whole.starts_with("rt_sigreturn(") {
            let depth = in_handler.entry(tid).or_default();
            *depth = depth.saturating_sub(1);
            // The handler is done: the call it interrupted failed with EINTR, or goes on.
            if whole.ends_with(" = -1 EINTR (Interrupted system call)") {
                if let Some(call) = restarted.remove(&tid) {
                    threads
                        .entry(tid)
                        .or_default()
                        .push(normalise(&format!("{call} = -1 EINTR (Interrupted system call)")));
                }
            }
            continue;
        }
        if in_handler.get(&tid).is_some_and(|depth| *depth > 0) {
            continue;
        }
        // The Rust runtime's check of stdio at start-up is not ours.
        if whole.starts_with("poll([{fd=0, events=0}") {
            continue;
        }
        // A call strace shows as `= ? ERESTARTSYS` was interrupted by a stop of strace's own
        // and restarted by the kernel without the program seeing it: its real return is the
        // next line. That line shows the arguments of the restart (a pselect6 restarts with
        // the time that was left), the program's call is the first: keep its arguments. Unless
        // the first shows an argument the kernel fills in as a bare address (wait4's status,
        // not filled in when it was interrupted): then the restart's line is the call's.
        if let Some((call, _)) = whole.split_once(" = ? ERESTART") {
            restarted.insert(tid, call.to_string());
            continue;
        }
        let whole = match (restarted.remove(&tid), whole.rsplit_once(" = ")) {
            (Some(call), Some((_, ret))) if !normalise(&call).contains("ADDR") => format!("{call} = {ret}"),
            _ => whole,
        };
        threads.entry(tid).or_default().push(normalise(&whole));
    }
    threads
}

/// The signals some rt_sigaction in the log gave a handler (`sa_handler=0x…`): `SIGUSR1`.
fn handled_signals(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter_map(|line| line.split_once("rt_sigaction(").map(|(_, call)| call))
        .filter(|call| {
            call.split_once(", ")
                .is_some_and(|(_, action)| action.starts_with("{sa_handler=0x"))
        })
        .filter_map(|call| call.split(',').next().map(String::from))
        .collect()
}

/// Threads that strace saw die of a signal (`+++ killed by SIGPIPE +++`).
fn killed_by_a_signal(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|line| line.contains("+++ killed by"))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

fn number_field(record: &str, name: &str) -> Option<u32> {
    let at = record.find(&format!("\"{name}\":"))? + name.len() + 3;
    record[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A JSON string value, unescaped (our records use \" \\ \n \r \t and \u00XX).
fn string_field(record: &str, name: &str) -> Option<String> {
    let at = record.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let mut out = String::new();
    let mut chars = record[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}
