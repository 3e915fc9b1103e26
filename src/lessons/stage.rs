//! A demo's stage machinery: waiting for its processes, private lines to forked children, what
//! /proc says, a keyboard typing into a client; none of it the lesson, so every call here runs
//! inside [`trace::stage`].
//!
//! Under real strace these calls are still there, between the stage's markers, which
//! `tests/programs/trace_vs_strace.rs` leaves out; in the lesson's trace they make no line (what the
//! keyboard types is narrated).

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::unistd::Pid;

use crate::context::Context;
use crate::sys::epoll::EPOLL_FLAGS;
use crate::trace::{self, render};

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

/// The syscall numbers poll(2) may arrive as.
pub const POLL: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
];

/// Waits, at most `patience`, until every process in `pids` sleeps in one of `syscalls`;
/// returns how many do.
pub fn wait_until_asleep(pids: &[Pid], syscalls: &[i64], patience: Duration) -> usize {
    wait_until(patience, || pids.iter().all(|&pid| asleep_in(pid, syscalls)));
    pids.iter().filter(|&&pid| asleep_in(pid, syscalls)).count()
}

/// `voluntary_ctxt_switches` in /proc/PID/status: how many times the process has gone to
/// sleep. A process the kernel never wakes keeps the same count.
pub fn context_switches(pid: Pid) -> Option<u64> {
    let text = trace::stage(|| std::fs::read_to_string(format!("/proc/{pid}/status"))).ok()?;
    let line = text.lines().find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `TcpExt: ListenOverflows` in /proc/net/netstat: how many handshakes the listeners of this
/// machine (all of them, not only the demo's) dropped because an accept queue was full; what
/// `nstat -az TcpExtListenOverflows` prints.
pub fn listen_overflows() -> u64 {
    let table = trace::stage(|| std::fs::read_to_string("/proc/net/netstat")).unwrap_or_default();
    let mut rows = table.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return 0;
    };
    let column = names.split_whitespace().position(|name| name == "ListenOverflows");
    column
        .and_then(|c| values.split_whitespace().nth(c))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A thread of this process that spends its life in one loop around one waiting call (an
/// event loop asleep in pselect6), watched through `/proc/self/task/TID`: the demo waits until
/// it has gone round once more before it does the next thing, so the loop sees one event at a
/// time and its trace is the same on every run.
///
/// Its two /proc files are opened once, while the thread is known to make no descriptor of its
/// own, and kept above [`OUT_OF_THE_WAY`]; after that every look is a `pread` at offset 0 (the
/// kernel writes the file afresh), which takes no descriptor number. Opening them at each look
/// would race with the thread's own accept4 for the lowest free number.
pub struct Looper {
    syscall: File,
    status: File,
    waits_in: &'static [i64],
}

impl Looper {
    /// The thread `tid` of this process, whose loop waits in one of `waits_in`. Call it while
    /// that thread makes no descriptor (before its first client is started, say).
    ///
    /// # Errors
    /// When the thread's /proc files cannot be opened.
    pub fn new(tid: Pid, waits_in: &'static [i64]) -> Result<Looper, String> {
        let open = |name: &str| -> Result<File, String> {
            let path = format!("/proc/self/task/{tid}/{name}");
            let file = trace::stage(|| File::open(&path)).map_err(|e| format!("{path}: {e}"))?;
            trace::stage(|| out_of_the_way(OwnedFd::from(file))).map(File::from)
        };
        Ok(Looper {
            syscall: open("syscall")?,
            status: open("status")?,
            waits_in,
        })
    }

    /// Waits (at most `patience`) until the thread is asleep in its waiting call; returns how
    /// many times it has gone to sleep so far (`voluntary_ctxt_switches`), or None if it never
    /// got there.
    pub fn asleep(&self, patience: Duration) -> Option<u64> {
        let mut count = None;
        wait_until(patience, || {
            count = self.sleeping_count();
            count.is_some()
        });
        count
    }

    /// After something that wakes it: waits (at most `patience`) until the thread has slept
    /// again since `before` (its count grew) and sleeps in its waiting call once more, that is,
    /// until it has handled the event; returns the new count.
    pub fn went_round(&self, before: u64, patience: Duration) -> Option<u64> {
        let mut count = None;
        wait_until(patience, || {
            count = self.sleeping_count().filter(|&now| now > before);
            count.is_some()
        });
        count
    }

    /// Its sleep count, if it is asleep in its waiting call right now. The count is read
    /// between two looks at the call, so it belongs to that sleep.
    fn sleeping_count(&self) -> Option<u64> {
        let in_wait = || {
            let text = read_afresh(&self.syscall);
            let number = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
            number.is_some_and(|n| self.waits_in.contains(&n))
        };
        if !in_wait() {
            return None;
        }
        let count = read_afresh(&self.status)
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())?;
        in_wait().then_some(count)
    }
}

/// A /proc file's text as the kernel writes it now: `pread` from offset 0 (empty on error).
fn read_afresh(file: &File) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 4096];
    let n = trace::stage(|| file.read_at(&mut buf, 0)).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Where a [`Typist`]'s pipe ends go: above any number a lesson's own sockets take, so that
/// they never shift the numbers the lesson's trace shows.
const OUT_OF_THE_WAY: RawFd = 64;

/// A process of this same program whose stdin is a pipe the demo types into: the demo playing
/// a person at a terminal. Starting it, typing and Ctrl-D are staged; what is typed is
/// narrated by whoever types it.
pub struct Typist {
    name: String,
    child: Child,
    keys: Option<File>,
}

impl Typist {
    /// Starts this program again with `words` (and `--actor name`), its stdin a pipe.
    ///
    /// # Errors
    /// When the pipe cannot be made or the program cannot start.
    pub fn start(name: &str, words: &[&str]) -> Result<Typist, String> {
        trace::stage(|| {
            let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
            let reader = out_of_the_way(reader)?;
            let writer = File::from(out_of_the_way(writer)?);
            let program = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
            let child = Command::new(program)
                .args(words)
                .args(["--actor", name])
                .env(trace::TRACE_ENV, trace::mode().name())
                .stdin(Stdio::from(reader))
                .spawn()
                .map_err(|e| format!("starting {name}: {e}"))?;
            Ok(Typist {
                name: name.to_string(),
                child,
                keys: Some(writer),
            })
        })
    }

    /// The actor name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Types `text` into its stdin, and says so.
    ///
    /// # Errors
    /// When its stdin is closed, or the process is gone.
    pub fn types(&self, text: &str) -> Result<(), String> {
        trace::say(format!("types {text:?} into {}", self.name));
        let mut keys = self.keys.as_ref().ok_or("that stdin is closed")?;
        trace::stage(|| keys.write_all(text.as_bytes())).map_err(|e| format!("typing into {}: {e}", self.name))
    }

    /// Like Ctrl-D at a terminal: closes its stdin, so its next read returns 0. Says so.
    pub fn presses_ctrl_d(&mut self) {
        trace::say(format!("presses Ctrl-D in {}'s terminal", self.name));
        let keys = self.keys.take();
        trace::stage(|| drop(keys));
    }

    /// Waits for it to end.
    ///
    /// # Errors
    /// When it does not exit with status 0.
    pub fn wait(mut self) -> Result<(), String> {
        let keys = self.keys.take();
        let status = trace::stage(|| {
            drop(keys);
            self.child.wait()
        })
        .map_err(|e| format!("waiting for {}: {e}", self.name))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} ended with {status}", self.name))
        }
    }
}

/// Moves a descriptor to the lowest free number from [`OUT_OF_THE_WAY`] up (and closes the old one).
fn out_of_the_way(fd: OwnedFd) -> Result<OwnedFd, String> {
    let high =
        nix::fcntl::fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(OUT_OF_THE_WAY)).map_err(|e| format!("F_DUPFD: {e}"))?;
    // SAFETY: fcntl just returned this descriptor, a fresh duplicate that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}
