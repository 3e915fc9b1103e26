//! poll(2): an array of {fd, events}; the kernel fills in revents. No FD_SETSIZE limit.

use nix::errno::Errno;
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

fn show_events(fds: &[libc::pollfd]) -> String {
    let items: Vec<String> = fds
        .iter()
        .map(|p| format!("{{fd={}, events={}}}", p.fd, render::flags(p.events as i64, POLL_FLAGS)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn show_revents(fds: &[libc::pollfd]) -> String {
    let items: Vec<String> = fds
        .iter()
        .filter(|p| p.revents != 0)
        .map(|p| {
            format!(
                "{{fd={}, revents={}}}",
                p.fd,
                render::flags(p.revents as i64, POLL_FLAGS)
            )
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
    // SAFETY: PollFd is #[repr(transparent)] over libc::pollfd (nix 0.31.3, src/poll.rs), so
    // this is the same memory seen as pollfd entries; poll writes only their revents.
    let entries = unsafe { std::slice::from_raw_parts_mut(fds.as_mut_ptr().cast::<libc::pollfd>(), fds.len()) };
    poll_raw(entries, i32::from(timeout))
}

/// `poll(fds, nfds, timeout)` over C's own `struct pollfd` entries, which a loop can keep from
/// one call to the next (nix's `PollFd` borrows its descriptor, so an array of them cannot
/// outlive one call). `timeout` is in milliseconds, -1 for no limit.
///
/// # Errors
/// As [`poll`].
///
/// # References
/// <https://man7.org/linux/man-pages/man2/poll.2.html>
pub fn poll_raw(fds: &mut [libc::pollfd], timeout: i32) -> nix::Result<i32> {
    trace::syscall_into(
        &Spec::new("poll"),
        fds,
        |fds| {
            Args::new()
                .text(show_events(fds))
                .int(fds.len() as i64)
                .int(i64::from(timeout))
        },
        |fds| {
            // SAFETY: the pointer and length describe `fds`, a valid slice borrowed mutably
            // for the call.
            let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            Errno::result(ret)
        },
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
