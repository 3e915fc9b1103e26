//! Moving bytes: send/recv (sendto/recvfrom in the kernel), sendto, recvfrom, read, write.

use std::os::fd::AsFd;

use nix::sys::socket::{self as nix_socket, MsgFlags, SockaddrLike, SockaddrStorage};

use super::raw;
use super::socket::{Address, family_len};
use crate::trace::{self, Args, Finish, Spec, context, render};

/// `send()` arrives as `sendto` with no address, and its note says so.
const SEND: Spec = Spec::new("sendto").noted_as("send");
/// `recv()` arrives as `recvfrom` with no address, and its note says so.
const RECV: Spec = Spec::new("recvfrom").noted_as("recv").fills();

/// What a read's result means: 0 is end of file (or an empty datagram), which the
/// descriptor's kind explains.
fn read_finish(fd: i32, result: &nix::Result<usize>, args: Args) -> Finish {
    let finish = Finish::of(result).args(args);
    match result {
        Ok(0) => finish.noted_as(context::table().end_of_file(fd)),
        _ => finish,
    }
}

/// `send(fd, buf, len, flags)`, which the kernel receives as `sendto(fd, buf, len, flags, NULL, 0)`.
///
/// Returns how many bytes the kernel took: on a stream socket that can be fewer than `buf`
/// holds (a short send), so a caller that must send everything loops (see [`send_all`]).
///
/// # Errors
/// `EAGAIN` (non-blocking, send buffer full), `EPIPE` (peer gone; SIGPIPE too unless
/// `MSG_NOSIGNAL`), `ECONNRESET`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/send.2.html>
pub fn send(fd: impl AsFd, buf: &[u8], flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    trace::syscall(
        &SEND,
        || {
            Args::new()
                .fd(fd)
                .bytes(buf)
                .int(buf.len() as i64)
                .flags(flags.bits() as i64, render::MSG_FLAGS)
                .text("NULL")
                .int(0)
        },
        || nix_socket::send(fd, buf, flags),
        Finish::of,
    )
}

/// Calls [`send`] until all of `buf` is sent: what Python's `sendall` does.
///
/// # Errors
/// The first error `send` returns; the bytes before it were sent.
pub fn send_all(fd: impl AsFd, mut buf: &[u8], flags: MsgFlags) -> nix::Result<()> {
    while !buf.is_empty() {
        let sent = send(fd.as_fd(), buf, flags)?;
        buf = &buf[sent..];
    }
    Ok(())
}

/// `recv(fd, buf, len, flags)`, which the kernel receives as `recvfrom(fd, buf, len, flags, NULL, NULL)`.
///
/// Returns how many bytes arrived, at most `buf.len()`; 0 means the peer's FIN arrived (it
/// sends no more, and may still read), or on a datagram socket an empty datagram.
///
/// # Errors
/// `EAGAIN` (non-blocking, nothing to read), `ECONNRESET`, `EINTR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/recv.2.html>
pub fn recv(fd: impl AsFd, buf: &mut [u8], flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    trace::syscall_into(
        &RECV,
        buf,
        |_| Args::new().fd(fd),
        |buf| nix_socket::recv(fd, buf, flags),
        |buf, result| {
            let args = Args::new()
                .arg(vec![render::buffer_out(buf, result.as_ref().ok().copied())])
                .int(buf.len() as i64)
                .flags(flags.bits() as i64, render::MSG_FLAGS)
                .text("NULL")
                .text("NULL");
            read_finish(fd, result, args)
        },
    )
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`: one datagram to `addr`.
///
/// UDP may lose it; AF_UNIX never does: a receiver's full queue makes the sender wait (or,
/// non-blocking, fail with `EAGAIN`).
///
/// # Errors
/// `EMSGSIZE` for a datagram too big; `ECONNREFUSED` reported from an earlier datagram (UDP),
/// or nobody bound to that name (AF_UNIX); `EAGAIN`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sendto.2.html>
pub fn sendto(fd: impl AsFd, buf: &[u8], addr: impl Address, flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    addr.with(|addr| sendto_raw(fd, buf, addr, flags))
}

fn sendto_raw(fd: i32, buf: &[u8], addr: &dyn SockaddrLike, flags: MsgFlags) -> nix::Result<usize> {
    trace::syscall(
        &Spec::new("sendto"),
        || {
            Args::new()
                .fd(fd)
                .bytes(buf)
                .int(buf.len() as i64)
                .flags(flags.bits() as i64, render::MSG_FLAGS)
                .addr(addr)
                .int(addr.len())
        },
        || nix_socket::sendto(fd, buf, addr, flags),
        // A UDP datagram and an AF_UNIX one are not kept alike: the descriptor says which.
        |result| Finish::of(result).noted_as(context::table().note_for(fd, "sendto")),
    )
}

/// `recvfrom(fd, buf, len, 0, addr, addrlen)`: one datagram and who sent it.
///
/// A datagram larger than `buf` is cut, and the rest of it is lost.
///
/// # Errors
/// `EAGAIN`; `ECONNREFUSED` on a connected UDP socket whose peer's port is closed.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/recvfrom.2.html>
pub fn recvfrom(fd: impl AsFd, buf: &mut [u8]) -> nix::Result<(usize, Option<SockaddrStorage>)> {
    let fd = raw(&fd);
    let capacity = std::mem::size_of::<SockaddrStorage>() as u32;
    trace::syscall_into(
        &Spec::new("recvfrom").fills(),
        buf,
        |_| Args::new().fd(fd),
        |buf| nix_socket::recvfrom::<SockaddrStorage>(fd, buf),
        |buf, result| {
            let filled = result.as_ref().ok().map(|(n, _)| *n);
            let args = Args::new()
                .arg(vec![render::buffer_out(buf, filled)])
                .int(buf.len() as i64)
                .int(0);
            let args = match result {
                Ok((_, Some(addr))) => args.addr(addr).text(render::length_in_out(capacity, family_len(addr))),
                _ => args.unknown_pointer().text(format!("[{capacity}]")),
            };
            let count = result.as_ref().map(|(n, _)| *n).map_err(|e| *e);
            read_finish(fd, &count, args)
        },
    )
}

/// `read(fd, buf, count)`: works on sockets, pipes, terminals, files alike.
///
/// # Errors
/// `EAGAIN` (non-blocking, nothing to read), `EINTR`, `ECONNRESET` on a socket.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/read.2.html>
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> nix::Result<usize> {
    let number = raw(&fd);
    trace::syscall_into(
        &Spec::new("read").fills(),
        buf,
        |_| Args::new().fd(number),
        |buf| nix::unistd::read(&fd, buf),
        |buf, result| {
            let args = Args::new()
                .arg(vec![render::buffer_out(buf, result.as_ref().ok().copied())])
                .int(buf.len() as i64);
            let finish = read_finish(number, result, args);
            match result {
                Ok(0) => finish,
                _ => finish.noted_as(context::table().note_for(number, "read")),
            }
        },
    )
}

/// `write(fd, buf, count)`: on a socket, the same as `send` with no flags.
///
/// # Errors
/// `EAGAIN`, `EPIPE` (and SIGPIPE: write has no MSG_NOSIGNAL), `EINTR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/write.2.html>
pub fn write(fd: impl AsFd, buf: &[u8]) -> nix::Result<usize> {
    let number = raw(&fd);
    trace::syscall(
        &Spec::new("write"),
        || Args::new().fd(number).bytes(buf).int(buf.len() as i64),
        || nix::unistd::write(&fd, buf),
        |result| Finish::of(result).noted_as(context::table().note_for(number, "write")),
    )
}
