//! The poll(2) backend: one array of `struct pollfd {fd, events, revents}`, kept from one call
//! to the next, as a C loop keeps it.
//!
//! - register appends an entry, and an index (descriptor number -> slot) finds it again;
//!   reregister changes its `events`; deregister moves the last entry into its slot
//!   (swap-remove), so the array has no holes and never shifts;
//! - each entry asks for POLLIN (while the service reads the client), POLLPRI (urgent data,
//!   which select reports in its exceptional set), and POLLOUT only while a send waits;
//! - the kernel writes what happened into each entry's `revents`; the driver gets the entries
//!   that have some, found by one pass over the array that stops once it has them all.
//!
//! There is no FD_SETSIZE here: an entry names its descriptor as a plain int, so descriptor
//! 1024 and beyond are as good as 3. The limits left are RLIMIT_NOFILE (poll fails with
//! `EINVAL` if the array is longer) and the cost of passing the whole array every time: the
//! kernel checks every entry, ready or not.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use super::{Backend, Event, Interest, Options, Readiness, Service, Summary, millis};
use crate::sys;
use crate::trace;

/// Runs `service` on `listener` (non-blocking, listening: see [`super::listen`]) until
/// `options` says stop. Every client socket is closed on the way out; the listener is the
/// caller's.
///
/// # Errors
/// A poll that fails other than with `EINTR`.
pub fn serve<S: Service>(listener: impl AsFd, service: S, options: &Options) -> Result<Summary, String> {
    super::driver::run(Poll::new(), listener.as_fd(), service, options)
}

/// Not in the array.
const NO_SLOT: u32 = u32::MAX;

/// The array the kernel reads, and where each descriptor's entry is in it.
#[derive(Default)]
pub struct Poll {
    entries: Vec<libc::pollfd>,
    /// By descriptor number.
    slot_of: Vec<u32>,
    explained: bool,
}

impl Poll {
    pub fn new() -> Poll {
        Poll::default()
    }

    fn slot(&self, fd: BorrowedFd<'_>) -> Option<usize> {
        let slot = *self.slot_of.get(fd.as_raw_fd() as usize)?;
        (slot != NO_SLOT).then_some(slot as usize)
    }
}

fn events(interest: Interest) -> i16 {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    if interest.urgent {
        events |= libc::POLLPRI;
    }
    events
}

fn readiness(revents: i16) -> Readiness {
    let has = |bit: i16| revents & bit != 0;
    Readiness::when(has(libc::POLLIN), Readiness::READABLE)
        | Readiness::when(has(libc::POLLOUT), Readiness::WRITABLE)
        | Readiness::when(has(libc::POLLPRI), Readiness::URGENT)
        | Readiness::when(has(libc::POLLHUP), Readiness::HANG_UP)
        | Readiness::when(has(libc::POLLRDHUP), Readiness::READ_HANG_UP)
        // POLLNVAL: not an open descriptor, that is, one the loop closed and still asked about:
        // a bug in the loop, never the peer's doing. The client goes rather than spin.
        | Readiness::when(has(libc::POLLERR | libc::POLLNVAL), Readiness::ERROR)
}

impl Backend for Poll {
    const NAME: &'static str = "poll";

    fn register(&mut self, fd: BorrowedFd<'_>, _token: usize, interest: Interest) -> Result<(), String> {
        let number = fd.as_raw_fd() as usize;
        if self.slot_of.len() <= number {
            self.slot_of.resize(number + 1, NO_SLOT);
        }
        self.slot_of[number] = self.entries.len() as u32;
        self.entries.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: events(interest),
            revents: 0,
        });
        Ok(())
    }

    fn reregister(&mut self, fd: BorrowedFd<'_>, _token: usize, interest: Interest) -> nix::Result<()> {
        if let Some(slot) = self.slot(fd) {
            self.entries[slot].events = events(interest);
        }
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>, _token: usize) -> nix::Result<()> {
        let Some(slot) = self.slot(fd) else {
            return Ok(());
        };
        self.entries.swap_remove(slot);
        if let Some(moved) = self.entries.get(slot) {
            self.slot_of[moved.fd as usize] = slot as u32;
        }
        self.slot_of[fd.as_raw_fd() as usize] = NO_SLOT;
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()> {
        if !std::mem::replace(&mut self.explained, true) {
            trace::explain(
                "the whole array goes in every time: POLLIN for the listener and clients, \
                 POLLPRI for urgent data, POLLOUT only where a send met EAGAIN",
            );
        }
        let mut ready = sys::poll::poll_raw(&mut self.entries, millis(timeout))?;
        for entry in &self.entries {
            if ready == 0 {
                break;
            }
            if entry.revents != 0 {
                ready -= 1;
                events.push(Event {
                    token: entry.fd as usize,
                    readiness: readiness(entry.revents),
                });
            }
        }
        Ok(())
    }

    fn close(self) {}
}
