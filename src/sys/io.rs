//! Moving bytes: send/recv (sendto/recvfrom in the kernel), sendto, recvfrom, read, write.

use std::os::fd::AsFd;

use nix::sys::socket::{self as nix_socket, MsgFlags, SockaddrLike, SockaddrStorage};

use super::raw;
use super::socket::{Address, family_len};
use crate::trace::{self, render};

fn msg_flags(flags: MsgFlags) -> String {
    render::flags(flags.bits() as i64, render::MSG_FLAGS)
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
    let call = trace::enter("sendto", || {
        vec![
            fd.to_string(),
            render::quote(buf),
            buf.len().to_string(),
            msg_flags(flags),
            "NULL".into(),
            "0".into(),
        ]
    })
    .noted_as("send");
    let result = nix_socket::send(fd, buf, flags);
    call.exit_num(&result, Vec::new);
    result
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
/// Returns how many bytes arrived, at most `buf.len()`; 0 means the peer closed its side.
///
/// # Errors
/// `EAGAIN` (non-blocking, nothing to read), `ECONNRESET`, `EINTR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/recv.2.html>
pub fn recv(fd: impl AsFd, buf: &mut [u8], flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    let len = buf.len();
    let call = trace::enter_filling("recvfrom", || vec![fd.to_string()]).noted_as("recv");
    let result = nix_socket::recv(fd, buf, flags);
    call.exit_num(&result, || {
        vec![
            render::buffer_out(buf, &result, |n| *n),
            len.to_string(),
            msg_flags(flags),
            "NULL".into(),
            "NULL".into(),
        ]
    });
    result
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`: one datagram to `addr`.
///
/// # Errors
/// `EMSGSIZE` for a datagram too big; `ECONNREFUSED` reported from an earlier datagram.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sendto.2.html>
pub fn sendto(fd: impl AsFd, buf: &[u8], addr: impl Address, flags: MsgFlags) -> nix::Result<usize> {
    let fd = raw(&fd);
    addr.with(|addr| sendto_raw(fd, buf, addr, flags))
}

fn sendto_raw(fd: i32, buf: &[u8], addr: &dyn SockaddrLike, flags: MsgFlags) -> nix::Result<usize> {
    let call = trace::enter("sendto", || {
        vec![
            fd.to_string(),
            render::quote(buf),
            buf.len().to_string(),
            msg_flags(flags),
            render::sockaddr(addr),
            addr.len().to_string(),
        ]
    });
    let result = nix_socket::sendto(fd, buf, addr, flags);
    call.exit_num(&result, Vec::new);
    result
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
    let len = buf.len();
    let capacity = std::mem::size_of::<SockaddrStorage>() as u32;
    let call = trace::enter_filling("recvfrom", || vec![fd.to_string()]);
    let result = nix_socket::recvfrom::<SockaddrStorage>(fd, buf);
    call.exit_num(&result.as_ref().map(|(n, _)| *n).map_err(|e| *e), || {
        let (address, address_len) = match &result {
            Ok((_, Some(addr))) => (
                render::sockaddr(addr),
                render::length_in_out(capacity, family_len(addr)),
            ),
            _ => ("0xADDR".to_string(), format!("[{capacity}]")),
        };
        vec![
            render::buffer_out(buf, &result, |(n, _)| *n),
            len.to_string(),
            "0".into(),
            address,
            address_len,
        ]
    });
    result
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
    let len = buf.len();
    let call = trace::enter_filling("read", || vec![number.to_string()]);
    let result = nix::unistd::read(&fd, buf);
    call.exit_num(&result, || {
        vec![render::buffer_out(buf, &result, |n| *n), len.to_string()]
    });
    result
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
    let call = trace::enter("write", || {
        vec![number.to_string(), render::quote(buf), buf.len().to_string()]
    });
    let result = nix::unistd::write(&fd, buf);
    call.exit_num(&result, Vec::new);
    result
}
