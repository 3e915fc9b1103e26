//! Plumbing for the tests that fork (`tests/forks/`): forked children that report on a pipe, the
//! kernel's own view of them in /proc, and the lock all those tests take.
//!
//! The children are forked from a multi-threaded test process, so what they run here ([`report`],
//! [`exit_now`]) makes only async-signal-safe raw syscalls and never returns into Rust code.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest any step may take before the test gives up (a bound, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(10);
/// Every test of `tests/forks/` (fork.rs, herd.rs, herd_epoll.rs, sigpipe.rs) holds this while it
/// forks or has children, so that they fork one at a time and no child inherits another test's
/// sockets or pipes (a copy held there would keep a connection open that the test closed).
pub static FORKING: Mutex<()> = Mutex::new(());

/// What a child writes to the report pipe: two bytes, the event and the child's index.
pub const WOKE: u8 = b'W';
pub const ACCEPTED: u8 = b'A';
pub const AGAIN: u8 = b'E';

// ---------------------------------------------------------------------------------------------
// The children's side. Only async-signal-safe calls from here to _exit.
// ---------------------------------------------------------------------------------------------

pub fn report(fd: RawFd, event: u8, index: usize) {
    let record = [event, index as u8];
    // SAFETY: `record` is a valid 2-byte buffer; write(2) is async-signal-safe.
    unsafe { libc::write(fd, record.as_ptr().cast(), record.len()) };
}

pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once, without running any of the parent's code.
    unsafe { libc::_exit(code) }
}

/// A child whose wait on the non-blocking `listener` has just returned: reports that it woke,
/// tries one accept (reporting EAGAIN, or the connection, which it reads to the end), and exits.
pub fn woke_then_accept(listener: RawFd, reports: RawFd, index: usize) -> ! {
    report(reports, WOKE, index);
    // SAFETY: accept with NULL address pointers is valid; the listener is O_NONBLOCK, so this
    // never sleeps.
    let conn = unsafe { libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut()) };
    if conn < 0 {
        report(reports, AGAIN, index);
        exit_now(0);
    }
    report(reports, ACCEPTED, index);
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for 64 bytes; conn is the descriptor accept returned.
    while unsafe { libc::read(conn, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    exit_now(0)
}

// ---------------------------------------------------------------------------------------------
// The test's side: forking, watching /proc, reading reports, cleaning up.
// ---------------------------------------------------------------------------------------------

/// The children this test forked; any still alive when it ends (say, on a failed assertion)
/// are killed by PID and reaped.
pub struct Children {
    pub pids: Vec<libc::pid_t>,
}

impl Children {
    pub fn fork(count: usize, body: impl Fn(usize)) -> Children {
        let mut children = Children { pids: Vec::new() };
        for index in 0..count {
            // SAFETY: the child only runs `body`, which makes async-signal-safe raw syscalls and
            // ends in _exit (never returning here): nothing in it needs a lock another thread of
            // this process might hold.
            match unsafe { libc::fork() } {
                -1 => panic!("fork failed"),
                0 => {
                    body(index);
                    exit_now(3)
                }
                pid => children.pids.push(pid),
            }
        }
        children
    }

    pub fn blocked_in(&self, index: usize, syscalls: &[i64]) -> bool {
        let text = std::fs::read_to_string(format!("/proc/{}/syscall", self.pids[index])).unwrap_or_default();
        let number = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
        number.is_some_and(|n| syscalls.contains(&n))
    }

    pub fn is_zombie(&self, index: usize) -> bool {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pids[index])).unwrap_or_default();
        // The state follows the command name in parentheses: "1234 (herd-...) Z ...".
        text.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'))
    }

    /// Nothing tells another process when a child has gone to sleep: look every millisecond.
    pub fn wait_until_blocked_in(&self, index: usize, syscalls: &[i64]) {
        let started = Instant::now();
        while !self.blocked_in(index, syscalls) {
            assert!(
                started.elapsed() < PATIENCE,
                "child {index} never slept in {syscalls:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn wait_until_all_blocked_in(&self, syscalls: &[i64]) {
        for index in 0..self.pids.len() {
            self.wait_until_blocked_in(index, syscalls);
        }
    }

    /// Waits until every child has settled after a connection: exited (a loser), asleep in read
    /// (the winner, on its connection), or asleep in `waits` again (never woken, or woken and
    /// back to sleep because the connection was already taken). /proc/PID/syscall names a
    /// syscall only once the process is off the CPU, so a settled child has already counted
    /// its context switch.
    pub fn wait_until_settled(&self, waits: &[i64]) {
        let started = Instant::now();
        loop {
            let settled = (0..self.pids.len())
                .all(|i| self.is_zombie(i) || self.blocked_in(i, &[libc::SYS_read]) || self.blocked_in(i, waits));
            if settled {
                return;
            }
            assert!(started.elapsed() < PATIENCE, "the children did not settle");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// How many children woke for the connection: those that reported returning from their
    /// wait (`returned`), plus those asleep in `waits` again whose context switches grew since
    /// `before` (woken, found nothing, slept again without returning to user space).
    pub fn woken(&self, returned: &[usize], waits: &[i64], before: &[u64]) -> usize {
        let woken_and_slept_again = (0..self.pids.len())
            .filter(|&i| !returned.contains(&i) && self.blocked_in(i, waits))
            .filter(|&i| context_switches(self.pids[i]) > before[i])
            .count();
        returned.len() + woken_and_slept_again
    }

    pub fn reap_all_exited_zero(mut self) {
        for pid in std::mem::take(&mut self.pids) {
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("waitpid");
            assert!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "child {pid}: {status:?}"
            );
        }
    }

    pub fn kill_and_reap(mut self) {
        for pid in std::mem::take(&mut self.pids) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// The next report from the pipe, waiting at most [`PATIENCE`].
pub fn read_report(reports: &OwnedFd) -> (u8, usize) {
    let mut ready = [nix::poll::PollFd::new(reports.as_fd(), nix::poll::PollFlags::POLLIN)];
    let timeout = nix::poll::PollTimeout::try_from(PATIENCE).expect("timeout");
    let n = nix::poll::poll(&mut ready, timeout).expect("poll");
    assert_eq!(n, 1, "no report from the children within {PATIENCE:?}");
    let mut record = [0u8; 2];
    let mut pipe = std::fs::File::from(reports.try_clone().expect("dup"));
    pipe.read_exact(&mut record).expect("read a report");
    (record[0], usize::from(record[1]))
}

pub fn no_report_waiting(reports: &OwnedFd) -> bool {
    let mut ready = [nix::poll::PollFd::new(reports.as_fd(), nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut ready, nix::poll::PollTimeout::ZERO).expect("poll") == 0
}

/// `voluntary_ctxt_switches` from /proc/PID/status: how many times the process went to sleep.
pub fn context_switches(pid: libc::pid_t) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}
