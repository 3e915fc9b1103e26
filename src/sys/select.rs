//! select(2): three bitmaps of descriptors, rewritten in place with the ready ones.
//!
//! glibc turns `select` into the `pselect6` syscall, with the timeval converted to a timespec
//! and the remaining time converted back afterwards. The trace shows `pselect6` as strace
//! does; its `left {…}` is the timeval glibc handed back, so the last three digits of
//! `tv_nsec` are zeros where strace shows the kernel's nanoseconds.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::select::{FD_SETSIZE, FdSet};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::trace::{self, Args, Finish, Piece, Spec, render};

/// The size of an fd_set in bits: select can watch descriptors 0 to 1023 and no others.
pub const SETSIZE: usize = FD_SETSIZE;

/// Whether `fd` can go in an fd_set at all. nix's `FdSet::insert` panics past it, and C's
/// `FD_SET` writes past the end of the bitmap; check first and refuse the descriptor.
pub fn fits(fd: impl AsFd) -> bool {
    usize::try_from(fd.as_fd().as_raw_fd()).is_ok_and(|n| n < SETSIZE)
}

fn members(set: &FdSet<'_>, nfds: i32) -> Vec<RawFd> {
    if nfds <= 0 {
        return Vec::new();
    }
    set.fds(Some(nfds - 1)).map(|fd| fd.as_raw_fd()).collect()
}

fn show_set(set: &Option<&mut FdSet<'_>>, nfds: i32) -> String {
    set.as_ref()
        .map_or_else(|| "NULL".into(), |s| render::fd_list(&members(s, nfds)))
}

fn highest_plus_one(sets: [&Option<&mut FdSet<'_>>; 3]) -> i32 {
    sets.iter()
        .filter_map(|s| s.as_ref().and_then(|set| set.highest()).map(|fd| fd.as_raw_fd() + 1))
        .max()
        .unwrap_or(0)
}

/// `select(nfds, readfds, writefds, exceptfds, timeout)`, seen by the kernel as `pselect6`.
///
/// `nfds` is the highest descriptor in any set plus one, computed here as C programs do by
/// hand. On return each set holds only its ready descriptors and `timeout` the time left:
/// rebuild both before calling again.
///
/// # Errors
/// `EINTR` (a signal; never restarted), `EBADF` (a closed descriptor in a set), `EINVAL`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/select.2.html>
pub fn select<'a, 'fd: 'a>(
    readfds: Option<&'a mut FdSet<'fd>>,
    writefds: Option<&'a mut FdSet<'fd>>,
    exceptfds: Option<&'a mut FdSet<'fd>>,
    timeout: Option<&'a mut TimeVal>,
) -> nix::Result<i32> {
    let nfds = highest_plus_one([&readfds, &writefds, &exceptfds]);
    let mut sets = (readfds, writefds, exceptfds, timeout);
    trace::syscall_into(
        &Spec::new("pselect6"),
        &mut sets,
        |(readfds, writefds, exceptfds, timeout)| {
            let time = timeout
                .as_ref()
                .map_or_else(|| "NULL".into(), |t| render::timespec(t.tv_sec(), t.tv_usec() * 1000));
            Args::new()
                .int(nfds)
                .text(show_set(readfds, nfds))
                .text(show_set(writefds, nfds))
                .text(show_set(exceptfds, nfds))
                .text(time)
                .text("NULL")
        },
        |(readfds, writefds, exceptfds, timeout)| {
            nix::sys::select::select(
                nfds,
                readfds.as_deref_mut(),
                writefds.as_deref_mut(),
                exceptfds.as_deref_mut(),
                timeout.as_deref_mut(),
            )
        },
        |(readfds, writefds, exceptfds, timeout), result| {
            Finish::with(result, |&ready| {
                if ready == 0 {
                    return vec![Piece::text("0 (Timeout)")];
                }
                let mut parts = Vec::new();
                for (word, set) in [("in", readfds), ("out", writefds), ("except", exceptfds)] {
                    if let Some(set) = set {
                        let fds = members(set, nfds);
                        if !fds.is_empty() {
                            parts.push(format!("{word} {}", render::fd_list(&fds)));
                        }
                    }
                }
                let mut ret = vec![Piece::text(format!("{ready} ({}", parts.join(", ")))];
                if let Some(t) = timeout {
                    let separator = if parts.is_empty() { "" } else { ", " };
                    ret.push(Piece::text(format!("{separator}left ")));
                    ret.push(Piece::TimeLeft {
                        secs: t.tv_sec(),
                        nanos: t.tv_usec() * 1000,
                    });
                }
                ret.push(Piece::text(")"));
                ret
            })
        },
    )
}

/// A timeout for [`select`], from milliseconds.
pub fn timeout_ms(ms: i64) -> TimeVal {
    TimeVal::milliseconds(ms)
}
