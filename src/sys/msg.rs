//! sendmsg/recvmsg: bytes with control messages; here SCM_RIGHTS, descriptors sent to another process.
//!
//! Both are written over libc rather than nix: the trace prints the `struct msghdr` as strace
//! does, including what the kernel wrote back (`msg_controllen`, `msg_flags`), which nix's
//! `recvmsg` keeps to itself. One buffer of data and, at most, one SCM_RIGHTS message each way:
//! what passing descriptors needs. Other control messages are not decoded.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

use super::raw;
use crate::trace::{self, Args, Finish, Piece, Spec, context, render};

/// The bytes an SCM_RIGHTS message for `count` descriptors takes: `CMSG_SPACE(count * 4)`,
/// its header and its data, padded to the next 8 bytes.
pub fn rights_space(count: usize) -> usize {
    // SAFETY: CMSG_SPACE only does arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(rights_data_len(count)) as usize }
}

/// `CMSG_LEN(count * 4)`: the header and the descriptors, unpadded (the message's cmsg_len).
fn rights_len(count: usize) -> usize {
    // SAFETY: CMSG_LEN only does arithmetic on its argument.
    unsafe { libc::CMSG_LEN(rights_data_len(count)) as usize }
}

fn rights_data_len(count: usize) -> u32 {
    (count * std::mem::size_of::<RawFd>()) as u32
}

/// A control buffer of at least `bytes` bytes, aligned as a `struct cmsghdr` must be.
fn control_buffer(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(std::mem::size_of::<u64>())]
}

/// `{msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="x", iov_len=1}], msg_iovlen=1, `
fn header_start(data: Piece, capacity: usize) -> Vec<Piece> {
    vec![
        Piece::text("{msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="),
        data,
        Piece::text(", iov_len="),
        Piece::Int(capacity as i64),
        Piece::text("}], msg_iovlen=1, "),
    ]
}

/// `msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[5]}], `
/// then `msg_controllen=24, msg_flags=0}`; without descriptors only `msg_controllen=0, …`.
fn header_end(pieces: &mut Vec<Piece>, fds: &[RawFd], controllen: usize, msg_flags: i32) {
    if controllen > 0 && !fds.is_empty() {
        pieces.push(Piece::text(format!(
            "msg_control=[{{cmsg_len={}, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[",
            rights_len(fds.len())
        )));
        for (i, fd) in fds.iter().enumerate() {
            if i > 0 {
                pieces.push(Piece::text(", "));
            }
            pieces.push(Piece::Fd(*fd));
        }
        pieces.push(Piece::text("]}], "));
    }
    pieces.push(Piece::text(format!(
        "msg_controllen={controllen}, msg_flags={}}}",
        render::flags(msg_flags as i64, render::MSG_FLAGS)
    )));
}

/// `sendmsg(fd, {iov=[data], control=[SCM_RIGHTS fds]}, flags)`: bytes, and descriptors riding
/// with them to the process at the other end of an AF_UNIX socket.
///
/// The kernel takes a reference to each descriptor's open file (the socket itself, not its
/// number) and puts it in the message; the receiver's `recvmsg` gets new descriptors for the
/// same open files. Closing ours afterwards ends nothing there. At least one byte of data must
/// go with the descriptors (on a stream socket, they arrive with that byte).
///
/// # Errors
/// `EPIPE` when nobody is at the other end (SIGPIPE too, unless `MSG_NOSIGNAL`); `EBADF` when
/// one of `fds` is not open; `ETOOMANYREFS` past the kernel's limit on descriptors in flight;
/// `EAGAIN` on a non-blocking socket whose buffer is full.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sendmsg.2.html>, <https://man7.org/linux/man-pages/man7/unix.7.html>,
/// <https://man7.org/linux/man-pages/man3/cmsg.3.html>
pub fn sendmsg(fd: impl AsFd, data: &[u8], fds: &[BorrowedFd], flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    let numbers: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let controllen = if numbers.is_empty() {
        0
    } else {
        rights_space(numbers.len())
    };
    trace::syscall(
        &Spec::new("sendmsg"),
        || {
            let mut header = header_start(Piece::bytes(data), data.len());
            header_end(&mut header, &numbers, controllen, 0);
            Args::new()
                .fd(fd)
                .arg(header)
                .flags(flags.bits() as i64, render::MSG_FLAGS)
        },
        || send_rights(fd, data, &numbers, controllen, flags),
        |result| {
            if result.is_ok() {
                let mut table = context::table();
                for number in &numbers {
                    table.passed(*number);
                }
            }
            Finish::of(result)
        },
    )
}

fn send_rights(fd: RawFd, data: &[u8], fds: &[RawFd], controllen: usize, flags: MsgFlags) -> nix::Result<usize> {
    let mut control = control_buffer(controllen);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid: no name, no iovecs, no control.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if controllen > 0 {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = controllen;
        // SAFETY: msg_control points to `controllen` zeroed, aligned bytes: room for one
        // header and the descriptors (rights_space), so CMSG_FIRSTHDR is that room's start
        // and CMSG_DATA's `fds.len()` ints fit after the header.
        unsafe {
            let message = libc::CMSG_FIRSTHDR(&header);
            (*message).cmsg_level = libc::SOL_SOCKET;
            (*message).cmsg_type = libc::SCM_RIGHTS;
            (*message).cmsg_len = rights_len(fds.len());
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(message).cast::<RawFd>(), fds.len());
        }
    }
    // SAFETY: header points to one valid iovec over `data` and to `control`, both alive for the call.
    let sent = unsafe { libc::sendmsg(fd, &header, flags.bits()) };
    Errno::result(sent).map(|n| n as usize)
}

/// What [`recvmsg`] brought: how many bytes it put in the buffer, the descriptors that came
/// with them (new ones, this process's own), and the flags the kernel set (`MSG_CTRUNC`: the
/// room for descriptors was too small, and the kernel closed the ones that did not fit).
#[derive(Debug)]
pub struct Received {
    pub bytes: usize,
    pub fds: Vec<OwnedFd>,
    pub flags: MsgFlags,
}

/// recvmsg's buffers, and what the kernel left in the msghdr.
struct Incoming<'b> {
    data: &'b mut [u8],
    control: Vec<u64>,
    /// msg_controllen and msg_flags as the kernel wrote them back.
    controllen: usize,
    msg_flags: i32,
    /// The descriptor numbers that arrived, as the trace prints them.
    arrived: Vec<RawFd>,
}

/// `recvmsg(fd, {iov=[buf], control=room for max_fds}, flags)`: bytes, and any descriptors
/// sent with them.
///
/// Each descriptor that arrives is new in this process: the lowest free number, referring to
/// the sender's open file (the same socket, the same inode). Pass `MSG_CMSG_CLOEXEC` to have
/// them closed on exec, as `SOCK_CLOEXEC` does for new sockets. Returns 0 bytes at end of file.
///
/// # Errors
/// `EAGAIN` (non-blocking, nothing there), `EINTR`, `EMFILE` (no free descriptor for what
/// arrived: the kernel then sets `MSG_CTRUNC` rather than failing).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/recvmsg.2.html>, <https://man7.org/linux/man-pages/man7/unix.7.html>,
/// <https://man7.org/linux/man-pages/man3/cmsg.3.html>
pub fn recvmsg(fd: impl AsFd, buf: &mut [u8], max_fds: usize, flags: MsgFlags) -> nix::Result<Received> {
    let fd = raw(&fd);
    let room = if max_fds == 0 { 0 } else { rights_space(max_fds) };
    let mut incoming = Incoming {
        data: buf,
        control: control_buffer(room),
        controllen: 0,
        msg_flags: 0,
        arrived: Vec::new(),
    };
    trace::syscall_into(
        &Spec::new("recvmsg").fills(),
        &mut incoming,
        |_| Args::new().fd(fd),
        |incoming| receive_rights(fd, incoming, room, flags),
        |incoming, result| {
            let header = match result {
                Ok(received) => {
                    let filled = render::buffer_out(incoming.data, Some(received.bytes));
                    let mut header = header_start(filled, incoming.data.len());
                    header_end(&mut header, &incoming.arrived, incoming.controllen, incoming.msg_flags);
                    let mut table = context::table();
                    for number in &incoming.arrived {
                        table.received(*number);
                    }
                    header
                }
                // strace shows only the name length of a msghdr the call did not fill.
                Err(_) => vec![Piece::text("{msg_namelen=0}")],
            };
            let args = Args::new().arg(header).flags(flags.bits() as i64, render::MSG_FLAGS);
            let finish = Finish::with(result, |received| vec![Piece::Int(received.bytes as i64)]).args(args);
            match result {
                Ok(received) if received.bytes == 0 => finish.noted_as(context::table().end_of_file(fd)),
                _ => finish,
            }
        },
    )
}

fn receive_rights(fd: RawFd, incoming: &mut Incoming, room: usize, flags: MsgFlags) -> nix::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: incoming.data.as_mut_ptr().cast(),
        iov_len: incoming.data.len(),
    };
    // SAFETY: an all-zero msghdr is valid: no name, no iovecs, no control.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if room > 0 {
        header.msg_control = incoming.control.as_mut_ptr().cast();
        header.msg_controllen = room;
    }
    // SAFETY: header points to one valid iovec over the caller's buffer and to `room` bytes of
    // aligned control buffer, both alive for the call; the kernel writes within their lengths.
    let got = Errno::result(unsafe { libc::recvmsg(fd, &mut header, flags.bits()) })?;
    incoming.controllen = header.msg_controllen;
    incoming.msg_flags = header.msg_flags;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_controllen bytes of the control buffer with well-formed
    // cmsghdrs; CMSG_FIRSTHDR/CMSG_NXTHDR walk them and return null at the end. An SCM_RIGHTS
    // message's data holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors, each new in this process
    // and owned by nobody else yet.
    unsafe {
        let mut message = libc::CMSG_FIRSTHDR(&header);
        while !message.is_null() {
            if (*message).cmsg_level == libc::SOL_SOCKET && (*message).cmsg_type == libc::SCM_RIGHTS {
                let count = (*message).cmsg_len.saturating_sub(rights_len(0)) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(message).cast::<RawFd>();
                for i in 0..count {
                    let number = data.add(i).read_unaligned();
                    incoming.arrived.push(number);
                    fds.push(OwnedFd::from_raw_fd(number));
                }
            }
            message = libc::CMSG_NXTHDR(&header, message);
        }
    }
    Ok(Received {
        bytes: got as usize,
        fds,
        flags: MsgFlags::from_bits_retain(header.msg_flags),
    })
}
