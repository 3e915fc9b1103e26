//! select(2) and pselect(2): three bitmaps of descriptors, rewritten in place with the ready ones.
//!
//! glibc's `select` is the `pselect6` system call on x86_64: it converts the timeval to a
//! timespec, passes a null signal mask, and converts the time left back afterwards. [`select`]
//! does the same itself, with `syscall(SYS_pselect6, ...)` on a bitmap of its own ([`FdSet`]):
//! so the trace prints the kernel's own `left {tv_sec, tv_nsec}`, and a set can be of any
//! size. The kernel has no FD_SETSIZE: it reads `nfds` bits, however many. Only glibc's
//! `fd_set` type is 1024 bits, and so is nix's `FdSet` built on it ([`SETSIZE`], [`fits`]).

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::SigSet;
use nix::sys::time::{TimeSpec, TimeVal, TimeValLike};

use crate::trace::{self, Args, Finish, Piece, Spec, render};

/// The size of C's `fd_set` in bits: a loop built on it watches descriptors 0 to 1023 only.
pub const SETSIZE: usize = libc::FD_SETSIZE;

/// Whether `fd` fits in a C `fd_set`. nix's `FdSet::insert` panics past it, and C's `FD_SET`
/// writes past the end of the bitmap; a loop that uses that size checks first and refuses.
pub fn fits(fd: impl AsFd) -> bool {
    usize::try_from(fd.as_fd().as_raw_fd()).is_ok_and(|n| n < SETSIZE)
}

/// Bits in one word of a set: the kernel reads an array of `unsigned long`.
const WORD_BITS: usize = 64;
// The layout below is the kernel's on LP64 machines (x86_64, aarch64): 64-bit longs.
const _: () = assert!(std::mem::size_of::<libc::c_ulong>() == 8);

/// A set of descriptors for [`select`]: bit `fd % 64` of word `fd / 64`, as the kernel reads it.
/// It grows to hold any descriptor it is given; `FdSet::with_room(SETSIZE)` is C's `fd_set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdSet {
    words: Vec<u64>,
}

impl FdSet {
    /// An empty set.
    pub fn new() -> FdSet {
        FdSet::default()
    }

    /// An empty set with room for descriptors `0..bits` (no allocation when they are inserted).
    pub fn with_room(bits: usize) -> FdSet {
        FdSet {
            words: vec![0; bits.div_ceil(WORD_BITS)],
        }
    }

    /// Adds `fd` (a negative number is not a descriptor, and is ignored).
    pub fn insert(&mut self, fd: RawFd) {
        let Ok(fd) = usize::try_from(fd) else { return };
        let word = fd / WORD_BITS;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (fd % WORD_BITS);
    }

    /// Takes `fd` out.
    pub fn remove(&mut self, fd: RawFd) {
        let Ok(fd) = usize::try_from(fd) else { return };
        if let Some(word) = self.words.get_mut(fd / WORD_BITS) {
            *word &= !(1 << (fd % WORD_BITS));
        }
    }

    pub fn contains(&self, fd: RawFd) -> bool {
        usize::try_from(fd).is_ok_and(|fd| {
            self.words
                .get(fd / WORD_BITS)
                .is_some_and(|word| word & (1 << (fd % WORD_BITS)) != 0)
        })
    }

    /// Makes this set hold `source`'s descriptors below `nfds`, and only the words that hold
    /// them, reusing its own room: a loop's copy of its master set before each call (select
    /// rewrites the sets it is given), as C's `fd_set ready = master;` is, but of the `nfds`
    /// bits the kernel will read rather than all of FD_SETSIZE, and with no allocation.
    pub fn copy_below(&mut self, source: &FdSet, nfds: usize) {
        self.words.clear();
        self.words.extend_from_slice(source.words_below(nfds));
        let partial = nfds % WORD_BITS;
        if partial != 0 && self.words.len() == nfds.div_ceil(WORD_BITS) {
            // The last word is only partly below nfds.
            if let Some(last) = self.words.last_mut() {
                *last &= (1 << partial) - 1;
            }
        }
    }

    /// Empties the set, keeping its room.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// The highest descriptor in the set.
    pub fn highest(&self) -> Option<RawFd> {
        let (index, word) = self.words.iter().enumerate().rev().find(|(_, word)| **word != 0)?;
        let bit = WORD_BITS - 1 - word.leading_zeros() as usize;
        RawFd::try_from(index * WORD_BITS + bit).ok()
    }

    /// The descriptors in the set, lowest first.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.words_below(self.words.len() * WORD_BITS)
            .iter()
            .enumerate()
            .flat_map(|(index, &word)| bits(word).map(move |bit| (index * WORD_BITS + bit) as RawFd))
    }

    /// The words that hold descriptors `0..nfds`: what select scans, word by word.
    pub fn words_below(&self, nfds: usize) -> &[u64] {
        &self.words[..nfds.div_ceil(WORD_BITS).min(self.words.len())]
    }

    /// Grows the set, with zeros, to hold descriptors `0..nfds`: the kernel reads that many bits.
    fn make_room(&mut self, nfds: usize) {
        let words = nfds.div_ceil(WORD_BITS);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.words.as_mut_ptr().cast()
    }
}

/// The set bits of `word`, lowest first.
pub fn bits(mut word: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (word != 0).then(|| {
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            bit
        })
    })
}

fn members(set: &FdSet, nfds: i32) -> Vec<RawFd> {
    set.fds().take_while(|&fd| fd < nfds).collect()
}

fn show_set(set: &Option<&mut FdSet>, nfds: i32) -> String {
    set.as_ref()
        .map_or_else(|| "NULL".into(), |s| render::fd_list(&members(s, nfds)))
}

fn highest_plus_one(sets: [&Option<&mut FdSet>; 3]) -> i32 {
    sets.iter()
        .filter_map(|s| s.as_ref().and_then(|set| set.highest()).map(|fd| fd + 1))
        .max()
        .unwrap_or(0)
}

fn set_ptr(set: &mut Option<&mut FdSet>) -> *mut libc::c_void {
    set.as_mut().map_or(std::ptr::null_mut(), |set| set.as_mut_ptr())
}

/// `select(nfds, readfds, writefds, exceptfds, timeout)`, made as glibc makes it: the
/// `pselect6` system call, with the timeout as a timespec and a null signal mask.
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
pub fn select(
    readfds: Option<&mut FdSet>,
    writefds: Option<&mut FdSet>,
    exceptfds: Option<&mut FdSet>,
    timeout: Option<&mut TimeVal>,
) -> nix::Result<i32> {
    // What glibc does: the microseconds become nanoseconds.
    let left = timeout.as_ref().map(|t| libc::timespec {
        tv_sec: t.tv_sec(),
        tv_nsec: t.tv_usec() * 1000,
    });
    let (result, left) = pselect6([readfds, writefds, exceptfds], left, None);
    // And back, as glibc does: nanoseconds to microseconds.
    if let (Some(timeout), Some(left)) = (timeout, left) {
        *timeout = TimeVal::microseconds(left.tv_sec * 1_000_000 + left.tv_nsec / 1000);
    }
    result
}

/// `pselect(nfds, readfds, writefds, exceptfds, timeout, sigmask)`: select, with `sigmask` as
/// the thread's signal mask while it waits, set and put back by the kernel in the same call.
///
/// That closes a race select cannot: a loop that blocks a signal, checks a flag its handler
/// sets, then unblocks it and calls select, sleeps through a signal that came between the
/// unblocking and the select. Blocked until pselect opens the mask, the same signal
/// interrupts the wait at once (`EINTR`). `timeout` is not changed (the kernel writes the time
/// left into glibc's copy). `None` as the mask keeps the thread's own, as select does.
///
/// # Errors
/// As [`select`].
///
/// # References
/// <https://man7.org/linux/man-pages/man2/pselect.2.html>
pub fn pselect(
    readfds: Option<&mut FdSet>,
    writefds: Option<&mut FdSet>,
    exceptfds: Option<&mut FdSet>,
    timeout: Option<&TimeSpec>,
    sigmask: Option<&SigSet>,
) -> nix::Result<i32> {
    let left = timeout.map(|t| *t.as_ref());
    pselect6([readfds, writefds, exceptfds], left, Some(sigmask)).0
}

/// pselect6's last argument: a pointer to `{sigmask, sigsetsize}`, as glibc's pselect passes.
#[repr(C)]
struct MaskArgument {
    sigmask: *const libc::sigset_t,
    sigsetsize: libc::size_t,
}

/// The pselect6 system call. `mask` is `None` for select's null last argument, else the
/// signal mask pselect passes (itself `None` for a null mask). Returns the result and the
/// time the kernel left in `left`.
fn pselect6(
    mut sets: [Option<&mut FdSet>; 3],
    left: Option<libc::timespec>,
    mask: Option<Option<&SigSet>>,
) -> (nix::Result<i32>, Option<libc::timespec>) {
    let [readfds, writefds, exceptfds] = &sets;
    let nfds = highest_plus_one([readfds, writefds, exceptfds]);
    for set in sets.iter_mut().flatten() {
        set.make_room(nfds as usize);
    }
    let argument = mask.map(|mask| MaskArgument {
        sigmask: mask.map_or(std::ptr::null(), |m| m.as_ref() as *const libc::sigset_t),
        sigsetsize: 8,
    });
    let shown_mask = match mask {
        None => "NULL".to_string(),
        Some(mask) => format!(
            "{{sigmask={}, sigsetsize=8}}",
            mask.map_or_else(|| "NULL".to_string(), super::signal::show_mask)
        ),
    };
    let [readfds, writefds, exceptfds] = sets;
    let mut call = (readfds, writefds, exceptfds, left);
    let result = trace::syscall_into(
        &Spec::new("pselect6"),
        &mut call,
        |(readfds, writefds, exceptfds, left)| {
            let time = left
                .as_ref()
                .map_or_else(|| "NULL".into(), |t| render::timespec(t.tv_sec, t.tv_nsec));
            Args::new()
                .int(i64::from(nfds))
                .text(show_set(readfds, nfds))
                .text(show_set(writefds, nfds))
                .text(show_set(exceptfds, nfds))
                .text(time)
                .text(shown_mask)
        },
        |(readfds, writefds, exceptfds, left)| {
            let left_ptr = left.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
            let mask_ptr = argument.as_ref().map_or(std::ptr::null(), |a| a as *const MaskArgument);
            // SAFETY: each set pointer is null or points to at least nfds bits of words that
            // this call borrows mutably (make_room above); the timespec pointer is null or
            // points to `left`; the last is null (select) or points to `argument`, whose mask
            // pointer is null or a sigset_t borrowed for the call.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_pselect6,
                    libc::c_long::from(nfds),
                    set_ptr(readfds),
                    set_ptr(writefds),
                    set_ptr(exceptfds),
                    left_ptr,
                    mask_ptr,
                )
            };
            if ret < 0 { Err(Errno::last()) } else { Ok(ret as i32) }
        },
        |(readfds, writefds, exceptfds, left), result| {
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
                if let Some(t) = left {
                    let separator = if parts.is_empty() { "" } else { ", " };
                    ret.push(Piece::text(format!("{separator}left ")));
                    ret.push(Piece::TimeLeft {
                        secs: t.tv_sec,
                        nanos: t.tv_nsec,
                    });
                }
                ret.push(Piece::text(")"));
                ret
            })
        },
    );
    (result, call.3)
}

/// A timeout for [`select`], from milliseconds.
pub fn timeout_ms(ms: i64) -> TimeVal {
    TimeVal::milliseconds(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_grows_to_any_descriptor_and_lists_them_in_order() {
        let mut set = FdSet::new();
        assert_eq!(set.highest(), None);
        for fd in [3, 64, 2047, 5] {
            set.insert(fd);
        }
        assert_eq!(set.fds().collect::<Vec<_>>(), [3, 5, 64, 2047]);
        assert_eq!(set.highest(), Some(2047));
        assert!(set.contains(64) && !set.contains(63) && !set.contains(-1));
        set.remove(2047);
        assert_eq!(set.highest(), Some(64));
        assert_eq!(set.words_below(65).len(), 2, "descriptors 0..65 take two words");
        let mut copy = FdSet::with_room(SETSIZE);
        copy.copy_below(&set, 65);
        assert_eq!(copy.fds().collect::<Vec<_>>(), [3, 5, 64]);
        assert_eq!(
            copy.words_below(SETSIZE).len(),
            2,
            "only the words below nfds are copied"
        );
        copy.copy_below(&set, 64);
        assert_eq!(copy.fds().collect::<Vec<_>>(), [3, 5]);
        set.clear();
        assert_eq!(set.fds().count(), 0);
        assert_eq!(FdSet::with_room(SETSIZE).words_below(SETSIZE).len(), 16);
    }
}
