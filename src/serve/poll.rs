//! The chat room (or any [`Service`]) on poll(2): one array of `{fd, events}` entries, and
//! the kernel writes what happened into each entry's `revents`.
//!
//! One iteration:
//! 1. build the array afresh: the listener with POLLIN; every client with POLLIN|POLLPRI
//!    (POLLPRI: urgent data, which select reports in its exceptional set), plus POLLOUT only
//!    while output waits for it. C programs keep one array and park an unused slot with
//!    fd = -1, which poll skips; nix's `PollFd` holds a `BorrowedFd` and cannot be -1
//!    (nix#2254), so we rebuild. It costs little next to the call itself: the whole array
//!    crosses into the kernel on every poll, and the kernel checks every entry, ready or not;
//! 2. poll, with the timeout given again (poll does not rewrite it, unlike select);
//! 3. copy each client's `revents` out and let the array go (it borrows the sockets);
//! 4. act: trouble first, then reads, then writes, and accepts last, so a number that a close
//!    freed this round and accept4 handed out again is never taken for the old client.
//!
//! There is no FD_SETSIZE here: an entry names its descriptor as a plain int, so descriptor
//! 1024 and beyond are as good as 3. The limits left are RLIMIT_NOFILE (poll fails with
//! `EINVAL` if the array is longer) and the cost of passing the whole array every time.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{Chat, Options, Progress, Service, Summary};
use crate::chat::ClientId;
use crate::sys::{self, Errno};
use crate::trace;

/// Runs the room (or any [`Service`]) on `listener` (non-blocking, listening: see
/// [`super::listen`]) until `options` says stop. Every client socket is closed on the way out;
/// the listener is the caller's.
///
/// # Errors
/// A poll that fails other than with `EINTR` (a signal: ask again).
pub fn serve<S: Service>(listener: impl AsFd, room: S, options: &Options) -> Result<Summary, String> {
    let listener = listener.as_fd();
    let mut chat = Chat::new(room);
    let mut iterations = 0;
    while !options.done(iterations, &chat) {
        iterations += 1;
        if iterations == 1 {
            trace::explain(
                "the whole array goes in every time: POLLIN for the listener and clients, \
                 POLLPRI for urgent data, POLLOUT only where output waits",
            );
        }
        let ready = match wait(listener, &chat, options.tick) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue, // poll is never restarted after a signal: ask again
            Err(error) => {
                chat.close_all();
                return Err(format!("poll: {error}"));
            }
        };
        for &(id, revents) in &ready.clients {
            if revents.contains(PollFlags::POLLNVAL) {
                // Not a descriptor: we closed it and still asked about it. That is a bug in
                // this loop, never the peer's doing; drop the client rather than spin on it.
                chat.fail(id, "POLLNVAL: not an open descriptor (a bug in the loop)");
            } else if revents.contains(PollFlags::POLLPRI) {
                chat.fail(id, "POLLPRI: urgent (out-of-band) data, which the chat does not use");
            } else if revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                // Read first: recv says what happened (0 for end-of-file, ECONNRESET, ...), and
                // any bytes that came before it are still delivered. If recv found nothing to
                // report, the hang-up or error itself ends the client.
                if chat.read(id) == Progress::Drained {
                    chat.fail(id, "POLLHUP or POLLERR: the connection is finished");
                }
            }
        }
        for &(id, revents) in &ready.clients {
            if revents.contains(PollFlags::POLLIN) {
                chat.read(id);
            }
        }
        for &(id, revents) in &ready.clients {
            if revents.contains(PollFlags::POLLOUT) {
                chat.flush(id);
            }
        }
        if ready.listener {
            chat.accept(listener, |_| Ok(()));
        }
    }
    chat.close_all();
    Ok(Summary {
        iterations,
        served: chat.served(),
    })
}

/// What one poll found, copied out of the array.
struct Ready {
    listener: bool,
    /// Each client whose entry came back with some `revents`, in array order.
    clients: Vec<(ClientId, PollFlags)>,
}

/// Builds the array, waits at most `tick`, and says which descriptors are ready.
fn wait<S: Service>(listener: BorrowedFd<'_>, chat: &Chat<S>, tick: Duration) -> nix::Result<Ready> {
    let mut ids = Vec::new();
    let mut fds = vec![PollFd::new(listener, PollFlags::POLLIN)];
    for (id, socket) in chat.sockets() {
        let mut events = PollFlags::POLLPRI;
        if chat.wants_read(id) {
            events |= PollFlags::POLLIN;
        }
        if chat.wants_write(id) {
            events |= PollFlags::POLLOUT;
        }
        ids.push(id);
        fds.push(PollFd::new(socket, events));
    }
    let millis = u16::try_from(tick.as_millis()).unwrap_or(u16::MAX);
    sys::poll::poll(&mut fds, PollTimeout::from(millis))?;
    // from_bits_truncate: POLLRDHUP, which nix's PollFlags lacks, is not needed here.
    let revents = |fd: &PollFd<'_>| PollFlags::from_bits_truncate(sys::poll::raw_revents(fd));
    let clients = ids
        .into_iter()
        .zip(&fds[1..])
        .map(|(id, fd)| (id, revents(fd)))
        .filter(|(_, revents)| !revents.is_empty())
        .collect();
    Ok(Ready {
        listener: revents(&fds[0]).intersects(PollFlags::POLLIN | PollFlags::POLLERR),
        clients,
    })
}
