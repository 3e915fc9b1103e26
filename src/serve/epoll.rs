//! The epoll(7) backend, level-triggered: an interest list kept in the kernel.
//!
//! Where select and poll take the whole list of descriptors on every call, epoll keeps it in
//! the kernel: a descriptor is added once (`EPOLL_CTL_ADD`, with its number as the event's
//! `data`, handed back with every event), changed when what we want from it changes
//! (`EPOLL_CTL_MOD`), and removed before it is closed (`EPOLL_CTL_DEL`). epoll_wait returns
//! only the ready descriptors, so 10,000 idle clients cost a wait nothing.
//!
//! Level-triggered (the default): an event is reported on every wait for as long as the
//! condition holds, as select and poll do; so one recv per readiness is enough, and the next
//! wait reports what is left. EPOLLOUT is added with `EPOLL_CTL_MOD` only while a send met
//! EAGAIN, and taken off once the rest is sent: an idle socket is writable, and a
//! level-triggered EPOLLOUT would wake the loop on every wait for nothing. EPOLLIN comes off
//! the same way while the service pushes back, and goes on again when it takes bytes again.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::sys::epoll::{EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{Backend, Event, Interest, Options, Readiness, Service, Summary, millis};
use crate::context::Context;
use crate::sys::{self, epoll};
use crate::trace;

/// Events taken from the kernel per epoll_wait. More may be ready; the next wait returns them
/// (the kernel rotates its ready list, so nobody is left behind).
pub const EVENTS_PER_WAIT: usize = 128;

/// Runs `service` on `listener` (non-blocking, listening: see [`super::listen`]) until
/// `options` says stop. Every client socket is closed on the way out, and the epoll instance;
/// the listener is the caller's.
///
/// # Errors
/// An epoll_create1, epoll_ctl on the listener, or epoll_wait that fails (`EINTR` from
/// epoll_wait is a signal: wait again).
pub fn serve<S: Service>(listener: impl AsFd, service: S, options: &Options) -> Result<Summary, String> {
    super::driver::run(Epoll::new()?, listener.as_fd(), service, options)
}

/// An epoll instance and the buffer its events come back in.
pub struct Epoll {
    ep: nix::sys::epoll::Epoll,
    events: Vec<EpollEvent>,
    /// The notes the trace has given (one bit each), so each is given once.
    explained: u8,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    ///
    /// # Errors
    /// `EMFILE`, `ENOMEM`, in one line.
    pub fn new() -> Result<Epoll, String> {
        trace::explain(
            "an epoll instance: the interest list lives in the kernel, not in each call; \
             EPOLL_CLOEXEC keeps it out of programs we might exec",
        );
        let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        Ok(Epoll {
            ep,
            events: vec![EpollEvent::empty(); EVENTS_PER_WAIT],
            explained: 0,
        })
    }

    /// Gives the next call the note `text`, the first time note `which` comes up.
    fn explain_once(&mut self, which: u8, text: &str) {
        if self.explained & (1 << which) == 0 {
            self.explained |= 1 << which;
            trace::explain(text);
        }
    }

    /// `EPOLL_CTL_ADD` for `fd` with `flags`, `data` = its token.
    pub(super) fn add(&mut self, fd: BorrowedFd<'_>, token: usize, flags: EpollFlags) -> Result<(), String> {
        let event = EpollEvent::new(flags, token as u64);
        epoll::epoll_ctl_add(&self.ep, fd, event).map_err(|error| format!("epoll cannot watch it ({error})"))
    }

    pub(super) fn modify(&mut self, fd: BorrowedFd<'_>, token: usize, flags: EpollFlags) -> nix::Result<()> {
        epoll::epoll_ctl_mod(&self.ep, fd, EpollEvent::new(flags, token as u64))
    }

    pub(super) fn remove(&mut self, fd: BorrowedFd<'_>) -> nix::Result<()> {
        self.explain_once(
            0,
            "out of the interest list first: close removes it only with its last reference",
        );
        epoll::epoll_ctl_del(&self.ep, fd)
    }

    /// epoll_wait: only the ready descriptors come back.
    pub(super) fn wait_for(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()> {
        let timeout = EpollTimeout::try_from(millis(timeout)).unwrap_or(EpollTimeout::NONE);
        let ready = epoll::epoll_wait(&self.ep, &mut self.events, timeout)?;
        events.extend(self.events[..ready].iter().map(|event| Event {
            token: event.data() as usize,
            readiness: readiness(event.events()),
        }));
        Ok(())
    }
}

/// The epoll flags for `interest`.
pub(super) fn flags(interest: Interest) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    flags.set(EpollFlags::EPOLLIN, interest.read);
    flags.set(EpollFlags::EPOLLOUT, interest.write);
    flags.set(EpollFlags::EPOLLPRI, interest.urgent);
    flags
}

fn readiness(flags: EpollFlags) -> Readiness {
    Readiness::when(flags.contains(EpollFlags::EPOLLIN), Readiness::READABLE)
        | Readiness::when(flags.contains(EpollFlags::EPOLLOUT), Readiness::WRITABLE)
        | Readiness::when(flags.contains(EpollFlags::EPOLLPRI), Readiness::URGENT)
        | Readiness::when(flags.contains(EpollFlags::EPOLLERR), Readiness::ERROR)
        | Readiness::when(flags.contains(EpollFlags::EPOLLHUP), Readiness::HANG_UP)
        | Readiness::when(flags.contains(EpollFlags::EPOLLRDHUP), Readiness::READ_HANG_UP)
}

impl Backend for Epoll {
    const NAME: &'static str = "epoll_wait";

    fn register(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> Result<(), String> {
        if interest.urgent {
            self.explain_once(
                1,
                "added once: EPOLLIN for input, EPOLLPRI for urgent data; EPOLLOUT comes and goes \
                 with EPOLL_CTL_MOD",
            );
        } else {
            self.explain_once(
                2,
                "the listener, added once; data = its descriptor, handed back with each event",
            );
        }
        self.add(fd, token, flags(interest))
    }

    fn reregister(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> nix::Result<()> {
        if interest.write {
            self.explain_once(3, "a send met EAGAIN: EPOLLOUT on, until the rest is sent");
        } else {
            self.explain_once(
                4,
                "changed interest: EPOLLOUT off once sent, or every wait would report this idle socket",
            );
        }
        self.modify(fd, token, flags(interest))
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>, _token: usize) -> nix::Result<()> {
        self.remove(fd)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()> {
        self.wait_for(events, timeout)
    }

    fn close(self) {
        let _ = sys::close(self.ep.0);
    }
}
