//! A demo's machinery, kept out of the trace: /proc readings, control lines, a typing keyboard.
//!
//! A demo sometimes has to know what another process is doing (is client#2 asleep in recvfrom
//! yet? did the three workers that lost the race even wake up?), to tell a child when to go, or
//! to play a person typing at a terminal. None of that is the lesson, so everything here runs
//! inside [`trace::stage`]: our trace shows none of it (what the keyboard types is narrated),
//! and the strace comparison (tests/trace_vs_strace.rs) leaves its calls out, as it leaves out
//! everything between a stage's markers.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, setsockopt, sockopt};
use nix::sys::time::TimeVal;
use nix::unistd::Pid;

use crate::trace;

/// The syscall numbers poll(2) may arrive as.
pub const POLL: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
];

/// Whether `pid` sleeps inside one of `syscalls`. `/proc/PID/syscall` starts with the number of
/// the syscall a sleeping process is in (`288 0x3 …` in accept4 on x86_64) and says `running`
/// otherwise.
pub fn asleep_in(pid: Pid, syscalls: &[i64]) -> bool {
    let text = trace::stage(|| std::fs::read_to_string(format!("/proc/{pid}/syscall"))).unwrap_or_default();
    let number = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
    number.is_some_and(|n| syscalls.contains(&n))
}

/// Waits, at most `patience`, until every process in `pids` sleeps in one of `syscalls`;
/// returns how many do. Nothing tells one process when another has gone to sleep, so this
/// looks every millisecond.
pub fn wait_until_asleep(pids: &[Pid], syscalls: &[i64], patience: Duration) -> usize {
    let started = Instant::now();
    loop {
        let asleep = pids.iter().filter(|&&pid| asleep_in(pid, syscalls)).count();
        if asleep == pids.len() || started.elapsed() >= patience {
            return asleep;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
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
pub struct Looper {
    task: String,
    waits_in: &'static [i64],
}

impl Looper {
    /// The thread `tid` of this process, whose loop waits in one of `waits_in`.
    pub fn new(tid: Pid, waits_in: &'static [i64]) -> Looper {
        Looper {
            task: format!("/proc/self/task/{tid}"),
            waits_in,
        }
    }

    /// Waits (at most `patience`) until the thread is asleep in its waiting call; returns how
    /// many times it has gone to sleep so far (`voluntary_ctxt_switches`), or None if it never
    /// got there.
    pub fn asleep(&self, patience: Duration) -> Option<u64> {
        let started = Instant::now();
        loop {
            if let Some(count) = trace::stage(|| self.sleeping_count()) {
                return Some(count);
            }
            if started.elapsed() >= patience {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// After something that wakes it: waits (at most `patience`) until the thread has slept
    /// again since `before` (its count grew) and sleeps in its waiting call once more, that is,
    /// until it has handled the event; returns the new count.
    pub fn went_round(&self, before: u64, patience: Duration) -> Option<u64> {
        let started = Instant::now();
        loop {
            match trace::stage(|| self.sleeping_count()) {
                Some(count) if count > before => return Some(count),
                _ if started.elapsed() >= patience => return None,
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Its sleep count, if it is asleep in its waiting call right now. The count is read
    /// between two looks at the call, so it belongs to that sleep.
    fn sleeping_count(&self) -> Option<u64> {
        let in_wait = || {
            let text = std::fs::read_to_string(format!("{}/syscall", self.task)).unwrap_or_default();
            let number = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
            number.is_some_and(|n| self.waits_in.contains(&n))
        };
        if !in_wait() {
            return None;
        }
        let status = std::fs::read_to_string(format!("{}/status", self.task)).ok()?;
        let count = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())?;
        in_wait().then_some(count)
    }
}

/// One end of a private line between a demo's master and one of its children (an AF_UNIX
/// `SOCK_SEQPACKET` pair, so each word arrives whole), for the master to say when a child may
/// go on and the child to say what happened. Made, used and closed backstage.
pub struct Line(Option<OwnedFd>);

/// How long either end waits to hear a word before giving up: the other side is stuck.
const LINE_PATIENCE: Duration = Duration::from_secs(10);
/// The longest word a line carries.
const WORD_MAX: usize = 32;

impl Line {
    /// Both ends of a new line: fork, and keep one end on each side.
    ///
    /// # Errors
    /// When the socketpair cannot be made.
    pub fn pair() -> Result<(Line, Line), String> {
        trace::stage(|| {
            let (a, b) =
                nix::sys::socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                    .map_err(|e| format!("socketpair for a control line: {e}"))?;
            let patience = TimeVal::new(LINE_PATIENCE.as_secs() as _, 0);
            for end in [&a, &b] {
                setsockopt(end, sockopt::ReceiveTimeout, &patience).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
            }
            Ok((Line(Some(a)), Line(Some(b))))
        })
    }

    /// Sends one word to the other end.
    ///
    /// # Errors
    /// When the other end is gone.
    pub fn tell(&self, word: &str) -> Result<(), String> {
        let fd = self.fd()?;
        trace::stage(|| nix::sys::socket::send(fd, word.as_bytes(), MsgFlags::MSG_NOSIGNAL))
            .map(drop)
            .map_err(|e| format!("telling {word:?} on a control line: {e}"))
    }

    /// Waits (at most ten seconds) for the next word from the other end.
    ///
    /// # Errors
    /// When the other end closed or said nothing in time.
    pub fn hear(&self) -> Result<String, String> {
        let fd = self.fd()?;
        let mut word = [0u8; WORD_MAX];
        // A receive timeout makes a signal interrupt the wait even with SA_RESTART (signal(7));
        // under strace even an ignored SIGCHLD does: wait again.
        let n = trace::stage(|| {
            loop {
                match nix::sys::socket::recv(fd, &mut word, MsgFlags::empty()) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            }
        })
        .map_err(|e| format!("waiting on a control line: {e}"))?;
        if n == 0 {
            return Err("the other end of a control line closed".into());
        }
        Ok(String::from_utf8_lossy(&word[..n]).into_owned())
    }

    fn fd(&self) -> Result<i32, String> {
        self.0
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| "a closed control line".to_string())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let end = self.0.take();
        trace::stage(|| drop(end));
    }
}

/// Where a [`Typist`]'s pipe ends go: above any number a lesson's own sockets take, so that
/// they never shift the numbers the lesson's trace shows.
const OUT_OF_THE_WAY: RawFd = 64;

/// A process of this same program whose stdin is a pipe the demo types into: the demo playing
/// a person at a terminal. Starting it, typing and Ctrl-D are backstage; what is typed is
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
