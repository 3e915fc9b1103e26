//! The epoll(7) backend, edge-triggered (`EPOLLET`): each change is reported once.
//!
//! An event comes when the condition *changes*: new bytes arrive, room appears in a full send
//! buffer. A loop that stops reading before the input is exhausted will not hear of that
//! socket again until more bytes come: it starves. So the driver remembers what it has not
//! finished (a recv that filled its buffer, a service that took no bytes for a while, accepts
//! stopped at their budget) and comes back to it by itself: a few more rounds of reads in the
//! same wake, then a wait of timeout 0.
//!
//! Registration is once and for good: `EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLPRI|EPOLLET` for a
//! client, `EPOLLIN|EPOLLET` for the listener, and no `EPOLL_CTL_MOD` ever after. EPOLLOUT on
//! its own wakes the loop only when a full send buffer gets room again (it also rides along
//! with other events, and comes once after EPOLL_CTL_ADD, as a new socket is writable): the
//! loop sends at once whatever the service queues, and counts on EPOLLOUT only after a send
//! met EAGAIN. EPOLLRDHUP says the peer shut down its side: a read returns the rest, then 0.
//! The interest list, epoll_wait and the events are the level-triggered backend's
//! ([`super::epoll`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::sys::epoll::EpollFlags;

use super::epoll::{Epoll, flags};
use super::{Backend, Event, Interest, Options, Service, Summary};
use crate::trace;

/// Runs `service` on `listener` (non-blocking, listening: see [`super::listen`]) until
/// `options` says stop. Every client socket is closed on the way out, and the epoll instance;
/// the listener is the caller's.
///
/// # Errors
/// An epoll_create1, epoll_ctl on the listener, or epoll_wait that fails (`EINTR` from
/// epoll_wait is a signal: wait again).
pub fn serve<S: Service>(listener: impl AsFd, service: S, options: &Options) -> Result<Summary, String> {
    super::driver::run(EpollEdge(Epoll::new()?, false), listener.as_fd(), service, options)
}

/// An epoll instance whose every descriptor is edge-triggered; the flag says whether the trace
/// has explained a client's registration yet.
pub struct EpollEdge(Epoll, bool);

/// What `interest` is registered as, edge-triggered.
fn edge_flags(interest: Interest) -> EpollFlags {
    let mut edge = flags(interest) | EpollFlags::EPOLLET;
    edge.set(EpollFlags::EPOLLRDHUP, interest.read && interest.urgent);
    edge
}

impl Backend for EpollEdge {
    const NAME: &'static str = "epoll_wait";

    fn register(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> Result<(), String> {
        if interest.urgent && !std::mem::replace(&mut self.1, true) {
            trace::explain(
                "added once, edge-triggered: each change is reported once, so input is read \
                 until EAGAIN or a short read; EPOLLOUT stays on for good (alone, it wakes us \
                 only when a full send buffer gets room)",
            );
        }
        self.0.add(fd, token, edge_flags(interest))
    }

    fn reregister(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> nix::Result<()> {
        self.0.modify(fd, token, edge_flags(interest))
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>, token: usize) -> nix::Result<()> {
        self.0.deregister(fd, token)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()> {
        self.0.wait_for(events, timeout)
    }

    fn edge_triggered(&self) -> bool {
        true
    }

    fn close(self) {
        self.0.close();
    }
}
