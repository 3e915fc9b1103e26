//! A demo's stand-in for a person at a terminal: a client process whose stdin the demo types into.
//!
//! A terminal is one device you both type into and read from; here it is a socketpair, one end
//! the client's stdin, the other the demo's. The demo types into it and reads back what the
//! client writes to it (its "screen"), and types the next line only once the screen shows what
//! the last one caused: so the run is the same every time. All of it is plumbing, not the
//! lesson: its calls run in [`trace::stage`], and only what the person does (start a client,
//! type, press Ctrl-D, close the terminal) is narrated.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};

use crate::context::Context;
use crate::trace;

/// A terminal's descriptors start here, out of the way of the numbers the lesson shows.
const PLUMBING_FDS: RawFd = 64;

/// How long the demo waits for a screen to show a line, or a client to end.
const PATIENCE: Duration = Duration::from_secs(10);

/// One client's terminal, and the client once started.
pub struct Terminal {
    actor: &'static str,
    ours: UnixStream,
    theirs: Option<OwnedFd>,
    child: Option<Child>,
    /// What the screen showed after its last whole line.
    unread: Vec<u8>,
}

/// Moves a descriptor to the lowest free number from [`PLUMBING_FDS`] up (and closes the old one).
fn out_of_the_way(fd: OwnedFd) -> Result<OwnedFd, String> {
    let high = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(PLUMBING_FDS)).context("fcntl F_DUPFD_CLOEXEC")?;
    // SAFETY: fcntl just returned this descriptor, a fresh duplicate that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

impl Terminal {
    /// A terminal for the client that will be `actor` in the trace. Make every terminal before
    /// the lesson takes its own descriptors: they are moved to 64 and up, so the lesson's
    /// numbers (3, 4, 5...) read the same on every run.
    ///
    /// # Errors
    /// When the socketpair cannot be made.
    pub fn new(actor: &'static str) -> Result<Terminal, String> {
        trace::stage(|| {
            let (ours, theirs) = UnixStream::pair().context("socketpair")?;
            Ok(Terminal {
                actor,
                ours: UnixStream::from(out_of_the_way(OwnedFd::from(ours))?),
                theirs: Some(out_of_the_way(OwnedFd::from(theirs))?),
                child: None,
                unread: Vec::new(),
            })
        })
    }

    /// Starts this same program as `client --port PORT WORDS...` with this terminal as its
    /// stdin, as a person would in a second terminal; `what` says what it is, for the trace.
    ///
    /// # Errors
    /// When the client was started already, or cannot be.
    pub fn start(&mut self, port: u16, words: &[&str], what: &str) -> Result<(), String> {
        let theirs = self.theirs.take().ok_or("this terminal's client already started")?;
        trace::say(format!("starts {}: {what}", self.actor));
        let program = std::env::current_exe().context("finding this program")?;
        let child = trace::stage(|| {
            Command::new(program)
                .args(["client", "--port", &port.to_string(), "--actor", self.actor])
                .args(words)
                .env(trace::TRACE_ENV, trace::mode().name())
                .stdin(Stdio::from(theirs))
                .spawn()
        })
        .context(format!("starting {}", self.actor))?;
        self.child = Some(child);
        Ok(())
    }

    /// Types `text` at the client.
    ///
    /// # Errors
    /// When the terminal is gone.
    pub fn types(&mut self, text: &str) -> Result<(), String> {
        trace::say(format!("types {text:?} at {}", self.actor));
        trace::stage(|| self.ours.write_all(text.as_bytes())).context(format!("typing at {}", self.actor))
    }

    /// Waits (bounded) for the screen's next whole line and checks that it holds `want`.
    /// Not narrated: the trace shows the client writing it.
    ///
    /// # Errors
    /// A screen that showed something else, nothing within [`PATIENCE`], or closed.
    pub fn sees(&mut self, want: &str) -> Result<(), String> {
        let line = trace::stage(|| self.next_line(want))?;
        if line.contains(want) {
            Ok(())
        } else {
            Err(format!("{}'s screen showed {line:?}, not {want:?}", self.actor))
        }
    }

    fn next_line(&mut self, want: &str) -> Result<String, String> {
        let deadline = Instant::now() + PATIENCE;
        while !self.unread.contains(&b'\n') {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{}'s screen showed no {want:?} in {PATIENCE:?}", self.actor));
            }
            self.ours.set_read_timeout(Some(left)).context("SO_RCVTIMEO")?;
            let mut chunk = [0u8; 4096];
            match self.ours.read(&mut chunk) {
                Ok(0) => return Err(format!("{}'s terminal closed before showing {want:?}", self.actor)),
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("reading {}'s screen: {e}", self.actor)),
            }
        }
        let end = self.unread.iter().position(|&b| b == b'\n').unwrap_or(0);
        let line: Vec<u8> = self.unread.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// Like Ctrl-D at a terminal: the client's next read of its stdin returns 0.
    pub fn presses_ctrl_d(&mut self) {
        trace::say(format!("presses Ctrl-D at {}", self.actor));
        let _ = trace::stage(|| self.ours.shutdown(Shutdown::Write));
    }

    /// The terminal goes away: the client reads 0 from its stdin, and can no longer write to it.
    pub fn closes(&mut self) {
        trace::say(format!("closes {}'s terminal", self.actor));
        let _ = trace::stage(|| self.ours.shutdown(Shutdown::Both));
    }

    /// Waits (bounded) for the client to exit; not narrated (its last calls show it).
    ///
    /// # Errors
    /// A client that never started, did not end within [`PATIENCE`] (it is killed), or ended
    /// with a status other than 0.
    pub fn ends(&mut self) -> Result<(), String> {
        let mut child = self.child.take().ok_or("that client never started")?;
        let actor = self.actor;
        let status = trace::stage(|| {
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some(status) = child.try_wait().context(format!("waiting for {actor}"))? {
                    return Ok(status);
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{actor} did not end within {PATIENCE:?}; killed it"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{actor} ended with {status}"))
        }
    }
}

impl Drop for Terminal {
    /// A demo that failed half-way leaves no client running: it is killed (by its PID) and reaped.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            trace::stage(|| {
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    }
}
