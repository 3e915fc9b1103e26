//! A demo's collector: one process that prints the trace of every process of the demo.
//!
//! A demo with tracing on runs itself again as a child, in `wire` mode, with stdout a pipe to
//! the collector (stdin and stderr are shared). The child, and every process it starts or
//! forks (clients, terminals, children), inherit that fd 1 and that mode, so every event of
//! the demo arrives in the one pipe, as one record per write. The collector orders them by
//! their CLOCK_MONOTONIC times and prints them in the chosen mode: human as it goes, held back
//! [`HOLDBACK`] so that late records sort in; json and plain at the end, in their exact
//! order. The child keeps exactly the descriptors a lesson would have (0, 1 and 2), so its
//! descriptor numbers are the lesson's.
//!
//! The collector ignores SIGINT and SIGTERM (Ctrl-C reaches the whole process group: the
//! child stops, the collector prints what arrived) and exits with the child's status (128 +
//! the signal, if a signal ended it). The child is killed if the collector dies. Lines on the
//! pipe that are not records are passed through to stdout as they come.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigHandler, Signal};

use super::event::{RECORD_START, decode};
use super::sink::{HOLDBACK, Mode, Printer, TICK, TRACE_ENV, write_stdout};

/// After the child has ended, its own children may still hold the pipe: stop reading once
/// nothing has come for this long.
const QUIET_AFTER_CHILD: Duration = Duration::from_millis(500);

/// Runs this program again as the demo's traced child and prints its trace in `mode`; returns
/// the exit status to end with.
pub fn collect(mode: Mode) -> i32 {
    let origin = super::now_ns();
    let mut command = match std::env::current_exe() {
        Ok(program) => Command::new(program),
        Err(error) => {
            eprintln!("socklab: cannot find this program to run the demo: {error}");
            return 1;
        }
    };
    command
        .args(std::env::args_os().skip(1))
        .env(TRACE_ENV, Mode::Wire.name())
        .stdout(Stdio::piped());
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("socklab: cannot start the demo: {error}");
            return 1;
        }
    };
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN runs no code in this process.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) };
    }
    let holdback = (mode == Mode::Human).then_some(HOLDBACK);
    let mut printer = Printer::new(mode, origin, holdback);
    if let Some(pipe) = child.stdout.take() {
        read_records(OwnedFd::from(pipe), &mut printer, &mut child);
    }
    printer.end();
    match child.wait() {
        Ok(status) => exit_code(status),
        Err(error) => {
            eprintln!("socklab: waiting for the demo: {error}");
            1
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Reads the pipe until every writer has closed it (or the child ended and the rest stay quiet).
fn read_records(pipe: OwnedFd, printer: &mut Printer, child: &mut std::process::Child) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut child_ended = false;
    let mut last_data = Instant::now();
    loop {
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::ZERO);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => match nix::unistd::read(&pipe, &mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    last_data = Instant::now();
                    pending.extend_from_slice(&chunk[..n]);
                    take_lines(&mut pending, printer);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            },
            Err(_) => break,
        }
        printer.tick();
        if !child_ended {
            child_ended = matches!(child.try_wait(), Ok(Some(_)));
        }
        if child_ended && last_data.elapsed() >= QUIET_AFTER_CHILD {
            break;
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        take_lines(&mut pending, printer);
    }
}

/// Hands every complete line in `pending` on: records to the printer, anything else to stdout.
fn take_lines(pending: &mut Vec<u8>, printer: &mut Printer) {
    let mut start = 0;
    while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
        let line = &pending[start..start + end];
        if line.first() == Some(&RECORD_START) {
            if let Some(event) = decode(line) {
                printer.push(event);
            }
        } else {
            write_stdout(&pending[start..=start + end]);
        }
        start += end + 1;
    }
    pending.drain(..start);
}
