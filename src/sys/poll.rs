//! poll(2): an array of {fd, events}; the kernel fills in revents. No FD_SETSIZE limit.

use std::os::fd::AsRawFd;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::trace::{self, Args, Finish, Piece, Spec, render};

/// strace's names for poll bits, in its order.
pub const POLL_FLAGS: &trace::pieces::FlagTable = &[
    (libc::POLLIN as i64, "POLLIN"),
    (libc::POLLPRI as i64, "POLLPRI"),
    (libc::POLLOUT as i64, "POLLOUT"),
    (libc::POLLERR as i64, "POLLERR"),
    (libc::POLLHUP as i64, "POLLHUP"),
    (libc::POLLNVAL as i64, "POLLNVAL"),
    (libc::POLLRDNORM as i64, "POLLRDNORM"),
    (libc::POLLRDBAND as i64, "POLLRDBAND"),
    (libc::POLLWRNORM as i64, "POLLWRNORM"),
    (libc::POLLWRBAND as i64, "POLLWRBAND"),
    (0x400, "POLLMSG"),
    (libc::POLLRDHUP as i64, "POLLRDHUP"),
];

fn show_events(fds: &[PollFd<'_>]) -> String {
    let items: Vec<String> = fds
        .iter()
        .map(|p| {
            let events = render::flags(raw_events(p) as i64, POLL_FLAGS);
            format!("{{fd={}, events={events}}}", p.as_fd_raw())
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The events asked for, raw: nix's `PollFd::events()` panics on bits `PollFlags` lacks
/// (POLLRDHUP), which a caller may set with `PollFlags::from_bits_retain`.
pub fn raw_events(fd: &PollFd<'_>) -> i16 {
    as_pollfd(fd).events
}

fn as_pollfd<'a>(fd: &'a PollFd<'_>) -> &'a libc::pollfd {
    // SAFETY: PollFd is #[repr(transparent)] over libc::pollfd (nix 0.31.3, src/poll.rs), so a
    // reference to one is a valid reference to the other, read-only here.
    unsafe { &*(fd as *const PollFd<'_>).cast::<libc::pollfd>() }
}

/// Every bit the kernel set in `revents`, including those nix's `PollFlags` does not know
/// (POLLRDHUP), for which `PollFd::revents()` returns `None`.
pub fn raw_revents(fd: &PollFd<'_>) -> i16 {
    as_pollfd(fd).revents
}

fn show_revents(fds: &[PollFd<'_>]) -> String {
    let items: Vec<String> = fds
        .iter()
        .filter_map(|p| {
            let bits = raw_revents(p);
            (bits != 0).then(|| {
                format!(
                    "{{fd={}, revents={}}}",
                    p.as_fd_raw(),
                    render::flags(bits as i64, POLL_FLAGS)
                )
            })
        })
        .collect();
    format!("[{}]", items.join(", "))
}

trait RawNumber {
    fn as_fd_raw(&self) -> i32;
}

impl RawNumber for PollFd<'_> {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}

/// `poll(fds, nfds, timeout)`: waits until one of `fds` is ready or `timeout` passes.
///
/// The whole array crosses into the kernel on every call: cost grows with its length.
///
/// # Errors
/// `EINTR` (never restarted), `EINVAL` (more entries than RLIMIT_NOFILE), `ENOMEM`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/poll.2.html>
pub fn poll(fds: &mut [PollFd<'_>], timeout: PollTimeout) -> nix::Result<i32> {
    let millis = i32::from(timeout);
    trace::syscall_into(
        &Spec::new("poll"),
        fds,
        |fds| Args::new().text(show_events(fds)).int(fds.len() as i64).int(millis),
        |fds| nix::poll::poll(fds, timeout),
        |fds, result| {
            Finish::with(result, |&ready| {
                if ready == 0 {
                    vec![Piece::text("0 (Timeout)")]
                } else {
                    vec![Piece::text(format!("{ready} ({})", show_revents(fds)))]
                }
            })
        },
    )
}

/// Whether any of `flags` came back for `fd` (for POLLRDHUP, which nix's `PollFlags` lacks,
/// test `raw_revents(fd) & libc::POLLRDHUP`).
pub fn has(fd: &PollFd<'_>, flags: PollFlags) -> bool {
    raw_revents(fd) & flags.bits() != 0
}
