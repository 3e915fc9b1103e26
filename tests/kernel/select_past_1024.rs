//! select past 1024 (lesson 12; seed 003 says the limit can be raised "by editing the macro or
//! recompiling the kernel"). The kernel has no FD_SETSIZE: pselect6 reads `nfds` bits from
//! whatever bitmaps it is handed, up to the size of the process's descriptor table. FD_SETSIZE
//! is only the size of glibc's `fd_set` type, 1024 bits. A 2,048-bit bitmap of our own, passed to
//! the raw system call, gets descriptor 1500 reported ready.
//!
//! And C's `FD_SET` past the set: undefined behaviour. Built with `_FORTIFY_SOURCE`, glibc checks
//! it (`__fdelt_chk`) and aborts: "*** bit out of range 0 - FD_SETSIZE on fd_set ***: terminated"
//! in glibc 2.36 here; built without, nothing stops the write past the end of the set. (The abort lesson 12 shows in Rust is the libc crate's own
//! panic: tests/fd_setsize.rs.)
//!
//! Cost: a few milliseconds for pselect6; compiling the C program twice, about 0.2 s.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};

/// The descriptor the test moves a readable socket to.
const FAR: RawFd = 1500;
/// And a descriptor with nothing to read, also past 1024.
const QUIET: RawFd = 1400;
/// Bits in the bitmap we hand the kernel: twice glibc's FD_SETSIZE.
const BITS: usize = 2048;
const WORD_BITS: usize = u64::BITS as usize;
/// How long a child program may run before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// A copy of `fd` on exactly `number`.
fn copy_at(fd: impl AsFd, number: RawFd) -> OwnedFd {
    let raw = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(number)).expect("F_DUPFD_CLOEXEC");
    // SAFETY: fcntl just returned this new descriptor and nothing else owns it.
    let copy = unsafe { OwnedFd::from_raw_fd(raw) };
    assert_eq!(raw, number, "descriptor {number} was taken; got {raw}");
    copy
}

/// The soft RLIMIT_NOFILE raised, if it must be, so that descriptor `FAR` can exist.
fn room_for_far() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let wanted = FAR as u64 + 1;
    assert!(hard >= wanted, "the hard RLIMIT_NOFILE ({hard}) is below {wanted}");
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("raising the soft limit");
    }
}

fn set(bitmap: &mut [u64], fd: RawFd) {
    bitmap[fd as usize / WORD_BITS] |= 1 << (fd as usize % WORD_BITS);
}

fn members(bitmap: &[u64]) -> Vec<usize> {
    (0..bitmap.len() * WORD_BITS)
        .filter(|&n| bitmap[n / WORD_BITS] & (1 << (n % WORD_BITS)) != 0)
        .collect()
}

/// `pselect6(nfds, readfds, NULL, NULL, {5, 0}, NULL)` made directly, as glibc's select makes it.
fn pselect6_read(nfds: i32, readfds: &mut [u64]) -> i64 {
    assert!(readfds.len() * WORD_BITS >= nfds as usize, "the kernel reads nfds bits");
    unchecked_pselect6_read(nfds, readfds)
}

/// The same, trusting the kernel to read no more of `readfds` than it holds: the kernel reads
/// min(nfds, the descriptor table's size) bits, and at worst fails with EFAULT.
fn unchecked_pselect6_read(nfds: i32, readfds: &mut [u64]) -> i64 {
    let timeout = libc::timespec { tv_sec: 5, tv_nsec: 0 };
    // SAFETY: the kernel reads and writes readfds only up to min(nfds, the descriptor table's
    // size) bits, which the callers make sure it holds; a bad pointer would be EFAULT, not a
    // crash. The other sets and the signal mask are NULL, which pselect6 accepts.
    unsafe {
        libc::syscall(
            libc::SYS_pselect6,
            nfds,
            readfds.as_mut_ptr(),
            std::ptr::null_mut::<u64>(),
            std::ptr::null_mut::<u64>(),
            &raw const timeout,
            std::ptr::null::<libc::c_void>(),
        )
    }
}

#[test]
fn pselect6_reports_fd_1500_ready_in_a_2048_bit_set() {
    room_for_far();
    let (reader, writer) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    assert_eq!(send(writer.as_raw_fd(), b"ready\n", MsgFlags::empty()), Ok(6));
    // Numbers that glibc's fd_set has no bit for: the bytes wait at 1500, nothing at 1400.
    let (quiet_reader, _quiet_writer) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    let far = copy_at(&reader, FAR);
    let quiet = copy_at(&quiet_reader, QUIET);

    let mut readfds = vec![0u64; BITS / WORD_BITS];
    set(&mut readfds, quiet.as_raw_fd());
    set(&mut readfds, far.as_raw_fd());
    let ready = pselect6_read(FAR + 1, &mut readfds);
    assert_eq!(ready, 1, "pselect6: {}", std::io::Error::last_os_error());
    assert_eq!(
        members(&readfds),
        vec![FAR as usize],
        "the kernel rewrote the bitmap to the ready ones"
    );

    // nfds may cover the whole bitmap we allocated: 2048 bits, twice FD_SETSIZE.
    let mut readfds = vec![0u64; BITS / WORD_BITS];
    set(&mut readfds, far.as_raw_fd());
    assert_eq!(pselect6_read(BITS as i32, &mut readfds), 1);
    assert_eq!(members(&readfds), vec![FAR as usize]);

    // An nfds past the descriptor table is cut to the table's size (FDSize in /proc/self/status):
    // with i32::MAX the kernel would otherwise read 256 MiB past this bitmap and fail with EFAULT.
    let table = descriptor_table_size();
    let mut readfds = vec![0u64; table.div_ceil(WORD_BITS)];
    set(&mut readfds, far.as_raw_fd());
    let ready = unchecked_pselect6_read(i32::MAX, &mut readfds);
    assert_eq!(ready, 1, "pselect6: {}", std::io::Error::last_os_error());
    assert_eq!(members(&readfds), vec![FAR as usize]);
}

/// How many descriptors this process's table has room for now (`FDSize`, the kernel's max_fds).
fn descriptor_table_size() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("FDSize:"))
        .expect("an FDSize line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("FDSize is a number")
}

/// A C program that sets bit 1100 in a `fd_set` followed by four words of its own, and prints
/// those words. 1100 / 64 = 17: the set has words 0 to 15, so bit 1100 lies in the second word
/// after it (`after[1]`), as bit 1100 % 64 = 12, the value 0x1000.
const FD_SET_PAST_THE_END: &str = r#"
#include <stdio.h>
#include <sys/select.h>

struct guarded { fd_set set; unsigned long after[4]; };

int main(int argc, char **argv) {
    (void)argv;
    struct guarded g = {0};
    /* A number the compiler cannot see: 1099 + argc, and argc is 1. */
    volatile int fd = 1099 + argc;
    FD_SET(fd, &g.set);
    /* Tell the compiler g may have been read and written here: without this, an optimiser
       that assumes the write stayed inside the set may print the zeros it stored first. */
    __asm__ volatile("" : : "r"(&g) : "memory");
    printf("FD_SET(%d) returned; after the set: %#lx %#lx %#lx %#lx\n", fd,
           g.after[0], g.after[1], g.after[2], g.after[3]);
    return 0;
}
"#;

/// Compiles [`FD_SET_PAST_THE_END`] with `cc -O2` and the given flags; returns the program.
fn build(name: &str, flags: &[&str]) -> PathBuf {
    util::require("cc");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("select_past_1024");
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    // One source file per build: the tests run at the same time.
    let source = dir.join(format!("{name}.c"));
    std::fs::write(&source, FD_SET_PAST_THE_END).expect("writing the C program");
    let program = dir.join(name);
    let output = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&program)
        .args(flags)
        .arg(&source)
        .output()
        .expect("running cc");
    assert!(
        output.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    program
}

/// Whether the file at `program` holds `name` (a dynamic symbol's name is in its .dynstr).
fn names_symbol(program: &std::path::Path, name: &[u8]) -> bool {
    let bytes = std::fs::read(program).expect("reading the program");
    bytes.windows(name.len()).any(|window| window == name)
}

#[test]
fn fd_set_past_fd_setsize_aborts_under_fortify_source() {
    let program = build("fortified", &["-D_FORTIFY_SOURCE=2"]);
    // The check is glibc's __fdelt_chk, which the fortified FD_SET calls (lesson 12's child#2
    // calls it directly): the program's dynamic symbols name it.
    assert!(
        names_symbol(&program, b"__fdelt_chk"),
        "the fortified program does not call __fdelt_chk"
    );
    let output = util::run_with_deadline(Command::new(program), CHILD_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "glibc's __fdelt_chk aborts; the program ended with {:?}, stderr: {stderr}",
        output.status
    );
    assert!(
        stderr.contains("*** bit out of range 0 - FD_SETSIZE on fd_set ***: terminated"),
        "glibc's fortify message: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("returned"));
}

#[test]
fn fd_set_past_fd_setsize_writes_past_the_set_without_fortify_source() {
    // Some compilers turn _FORTIFY_SOURCE on by default (Ubuntu's gcc): turn it off.
    let program = build("unchecked", &["-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=0"]);
    assert!(!names_symbol(&program, b"__fdelt_chk"), "nothing checks");
    let output = util::run_with_deadline(Command::new(program), CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "FD_SET(1100) returned; after the set: 0 0x1000 0 0",
        "nothing stopped the write: bit 12 of the second word after the set"
    );
}
