//! A demo's stage machinery: waiting for its processes, private lines to forked children, and
//! what /proc says; none of it the lesson, so every call here runs inside [`trace::stage`].
//!
//! Under real strace these calls are still there, between the stage's markers, which
//! `tests/trace_vs_strace.rs` leaves out; in the lesson's trace they make no line.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::unistd::Pid;

use crate::context::Context;
use crate::sys::epoll::EPOLL_FLAGS;
use crate::trace::{self, render};

/// Waits for a process started with [`super::spawn_process`]; one that did not exit with 0
/// fails the demo.
///
/// # Errors
/// When waiting fails, or the process ended otherwise than with status 0.
pub fn wait_process(actor: &str, mut child: Child) -> Result<(), String> {
    let status = trace::stage(|| child.wait()).context(format!("waiting for {actor}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{actor} ended with {status}"))
    }
}

/// One end of a private line between a demo's master and a child it forked: the choreography
/// that makes a demo's trace the same on every run (a child says it woke, the master says when
/// it may go on). An AF_UNIX stream socketpair; dropping an end closes it, staged too.
pub struct Line(Option<OwnedFd>);

/// The longest word said on a line.
const WORD_MAX: usize = 16;

impl Line {
    /// Two connected ends: one for the master, one for the child (each closes the other's
    /// copy after the fork, by dropping it).
    ///
    /// # Errors
    /// `EMFILE`, `ENFILE`, in one line.
    pub fn pair() -> Result<(Line, Line), String> {
        let (one, other) =
            trace::stage(|| socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC))
                .context("socketpair for a control line")?;
        Ok((Line(Some(one)), Line(Some(other))))
    }

    fn fd(&self) -> RawFd {
        self.0.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Sends `word` (at most 16 bytes) to the other end.
    ///
    /// # Errors
    /// When the other end is gone.
    pub fn say(&self, word: &str) -> Result<(), String> {
        let bytes = &word.as_bytes()[..word.len().min(WORD_MAX)];
        let sent = trace::stage(|| send(self.fd(), bytes, MsgFlags::MSG_NOSIGNAL)).context("a control line")?;
        if sent == bytes.len() {
            Ok(())
        } else {
            Err(format!("a control line took {sent} of {} bytes", bytes.len()))
        }
    }

    /// Waits for the other end's next word. Each side speaks only after hearing the other,
    /// so one read is one word.
    ///
    /// # Errors
    /// When the other end closed without a word.
    pub fn hear(&self) -> Result<String, String> {
        let mut buf = [0u8; WORD_MAX];
        let n = trace::stage(|| recv(self.fd(), &mut buf, MsgFlags::empty())).context("a control line")?;
        if n == 0 {
            return Err("the other end of a control line closed early".into());
        }
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            trace::stage(|| drop(fd));
        }
    }
}

/// Whether process `pid` is asleep in one of `syscalls`: `/proc/PID/syscall` starts with the
/// number of the syscall a sleeping process is in (`232 0x4 …` in epoll_wait on x86_64), and
/// says `running` for one on a CPU.
pub fn asleep_in(pid: Pid, syscalls: &[i64]) -> bool {
    let text = trace::stage(|| std::fs::read_to_string(format!("/proc/{pid}/syscall"))).unwrap_or_default();
    let number = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
    number.is_some_and(|n| syscalls.contains(&n))
}

/// Looks every millisecond, for at most `limit`, until `done` holds; says whether it did.
/// Nothing tells one process when another has gone to sleep or woken up.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    trace::stage(|| {
        loop {
            if done() {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// An epoll instance's interest list as the kernel keeps it: one `(descriptor, events)` per
/// `tfd:` line of `/proc/self/fdinfo/EPFD` (proc_pid_fdinfo(5)), the events named as strace
/// names them, in descriptor order (the kernel lists them in an order of its own).
pub fn epoll_interest(epoll: impl AsFd) -> Vec<(RawFd, String)> {
    let path = format!("/proc/self/fdinfo/{}", epoll.as_fd().as_raw_fd());
    let text = trace::stage(|| std::fs::read_to_string(path)).unwrap_or_default();
    let mut entries: Vec<(RawFd, String)> = text
        .lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["tfd:", fd, "events:", bits, ..] => {
                let bits = i64::from_str_radix(bits, 16).ok()?;
                Some((fd.parse().ok()?, render::flags(bits, EPOLL_FLAGS)))
            }
            _ => None,
        })
        .collect();
    entries.sort();
    entries
}
