//! socket(2) and friends: making, naming, connecting and configuring sockets.

use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self as nix_socket, AddressFamily, Backlog, GetSockOpt, SetSockOpt, Shutdown, SockFlag, SockProtocol, SockType,
    SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage, UnixAddr, sockopt,
};

use super::raw;
use crate::trace::{self, Args, Finish, Piece, Spec, context, render};

/// An address to hand the kernel, sized as C sizes it (16 bytes for IPv4, 28 for IPv6):
/// std's `SocketAddr` or one of nix's address types.
pub trait Address {
    /// Calls `f` with the address in the form nix passes to the kernel.
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R;
}

impl Address for SocketAddr {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        match self {
            SocketAddr::V4(v4) => f(&SockaddrIn::from(*v4)),
            SocketAddr::V6(v6) => f(&SockaddrIn6::from(*v6)),
        }
    }
}

impl Address for SocketAddrV4 {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        f(&SockaddrIn::from(*self))
    }
}

impl Address for SocketAddrV6 {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        f(&SockaddrIn6::from(*self))
    }
}

impl Address for UnixAddr {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        f(self)
    }
}

/// A storage holds any family in 128 bytes; the kernel is given only the family's own size.
impl Address for SockaddrStorage {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        if let Some(v4) = self.as_sockaddr_in() {
            f(v4)
        } else if let Some(v6) = self.as_sockaddr_in6() {
            f(v6)
        } else if let Some(unix) = self.as_unix_addr() {
            f(unix)
        } else {
            f(self)
        }
    }
}

impl<A: Address> Address for &A {
    fn with<R>(&self, f: impl FnOnce(&dyn SockaddrLike) -> R) -> R {
        (**self).with(f)
    }
}

/// `socket(domain, type|flags, protocol)`: a new, unconnected endpoint.
///
/// # Errors
/// `EMFILE` when the process holds as many descriptors as it may; `EAFNOSUPPORT`, `EINVAL`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/socket.2.html>
pub fn socket(
    domain: AddressFamily,
    ty: SockType,
    flags: SockFlag,
    protocol: impl Into<Option<SockProtocol>>,
) -> nix::Result<OwnedFd> {
    let protocol = protocol.into();
    let proto_number = protocol.map_or(0, |p| p as i32);
    trace::syscall(
        &Spec::new("socket"),
        || {
            Args::new()
                .text(render::constant(domain as i64, render::ADDRESS_FAMILIES))
                .text(render::socket_type(ty as i32 | flags.bits()))
                .text(render::protocol(domain as i32, proto_number))
        },
        || nix_socket::socket(domain, ty, flags, protocol),
        |result| {
            if let Ok(fd) = result {
                context::table().created(raw(fd), domain as i32, ty as i32);
            }
            Finish::of(result)
        },
    )
}

/// `socketpair(domain, type|flags, protocol, [a, b])`: two sockets connected to each other.
///
/// # Errors
/// `EMFILE`; `EOPNOTSUPP` for families that have no pairs (only AF_UNIX does).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/socketpair.2.html>
pub fn socketpair(domain: AddressFamily, ty: SockType, flags: SockFlag) -> nix::Result<(OwnedFd, OwnedFd)> {
    trace::syscall(
        &Spec::new("socketpair").fills(),
        || {
            Args::new()
                .text(render::constant(domain as i64, render::ADDRESS_FAMILIES))
                .text(render::socket_type(ty as i32 | flags.bits()))
                .int(0)
        },
        || nix_socket::socketpair(domain, ty, None, flags),
        |result| {
            let pair = match result {
                Ok((a, b)) => {
                    let mut table = context::table();
                    for end in [raw(a), raw(b)] {
                        table.created(end, domain as i32, ty as i32);
                        table.connected(end, None);
                    }
                    Args::new().arg(vec![
                        Piece::text("["),
                        Piece::Fd(raw(a)),
                        Piece::text(", "),
                        Piece::Fd(raw(b)),
                        Piece::text("]"),
                    ])
                }
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::with(result, |_| vec![Piece::Int(0)]).args(pair)
        },
    )
}

/// `bind(fd, addr, len)`: gives the socket its local address.
///
/// # Errors
/// `EADDRINUSE` when another socket holds the address (or TIME_WAIT does, without
/// SO_REUSEADDR); `EACCES` for ports below 1024 without privilege.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/bind.2.html>
pub fn bind(fd: impl AsFd, addr: impl Address) -> nix::Result<()> {
    let fd = raw(&fd);
    addr.with(|addr| {
        trace::syscall(
            &Spec::new("bind"),
            || Args::new().fd(fd).addr(addr).int(addr.len()),
            || nix_socket::bind(fd, addr),
            Finish::of,
        )
    })
}

/// `listen(fd, backlog)`: makes the socket passive; the kernel queues finished handshakes.
///
/// # Errors
/// `EINVAL` for a backlog above SOMAXCONN (nix refuses it before the call); `EADDRINUSE`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/listen.2.html>
pub fn listen(fd: impl AsFd, backlog: i32) -> nix::Result<()> {
    let backlog = Backlog::new(backlog)?;
    trace::syscall(
        &Spec::new("listen"),
        || Args::new().fd(raw(&fd)).int(i32::from(backlog)),
        || nix_socket::listen(&fd, backlog),
        |result| {
            if result.is_ok() {
                context::table().listening(raw(&fd));
            }
            Finish::of(result)
        },
    )
}

/// `accept4(fd, addr, len, flags)`: the next finished connection and who it is from.
///
/// nix's accept4 passes no address buffer; this asks for one, as Python's `accept()` does,
/// so the trace shows the peer. The new descriptor does not inherit O_NONBLOCK on Linux:
/// pass `SOCK_NONBLOCK` here for that.
///
/// # Errors
/// `EAGAIN` on a non-blocking listener with nothing queued; `EMFILE`; `EINTR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/accept4.2.html>
pub fn accept4(fd: impl AsFd, flags: SockFlag) -> nix::Result<(OwnedFd, SockaddrStorage)> {
    let fd = raw(&fd);
    let storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let capacity = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let mut filled = (storage, capacity);
    trace::syscall_into(
        &Spec::new("accept4").fills(),
        &mut filled,
        |_| Args::new().fd(fd),
        |(storage, len)| {
            // SAFETY: storage and len are valid for writes of `capacity` bytes and one socklen_t.
            let ret = unsafe { libc::accept4(fd, storage.as_mut_ptr().cast(), len, flags.bits()) };
            Errno::result(ret).map(|new_fd| {
                // SAFETY: accept4 succeeded, so new_fd is a fresh descriptor that nothing else owns.
                let owned = unsafe { OwnedFd::from_raw_fd(new_fd) };
                // SAFETY: the kernel wrote a sockaddr of `len` bytes into storage.
                let addr = unsafe { SockaddrStorage::from_raw(storage.as_ptr().cast(), Some(*len)) };
                (owned, addr.unwrap_or_else(unspecified_address))
            })
        },
        |(storage, len), result| {
            let args = match result {
                Ok((new_fd, addr)) => {
                    context::table().accepted(fd, raw(new_fd));
                    Args::new().addr(addr)
                }
                Err(_) => Args::new().pointer(storage.as_ptr()),
            };
            let args = args
                .text(render::length_in_out(capacity, *len))
                .flags(flags.bits() as i64, render::SOCKET_FLAGS);
            Finish::with(result, |(new_fd, _)| vec![Piece::Fd(raw(new_fd))]).args(args)
        },
    )
}

fn unspecified_address() -> SockaddrStorage {
    SockaddrStorage::from(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// `connect(fd, addr, len)`: TCP does the three-way handshake; UDP only records the peer.
///
/// # Errors
/// `ECONNREFUSED` (nobody listens), `EINPROGRESS` (non-blocking: the handshake goes on),
/// `ETIMEDOUT`, `ENETUNREACH`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/connect.2.html>
pub fn connect(fd: impl AsFd, addr: impl Address) -> nix::Result<()> {
    let fd = raw(&fd);
    addr.with(|addr| {
        trace::syscall(
            &Spec::new("connect"),
            || Args::new().fd(fd).addr(addr).int(addr.len()),
            || nix_socket::connect(fd, addr),
            |result| {
                let mut table = context::table();
                let note = table.connect_note(fd);
                table.connected(fd, result.as_ref().err().copied());
                Finish::of(result).noted_as(note)
            },
        )
    })
}

/// `getsockname(fd, addr, len)`: the local address the socket has (after port 0: which port).
///
/// # Errors
/// `EBADF`, `ENOTSOCK`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getsockname.2.html>
pub fn getsockname(fd: impl AsFd) -> nix::Result<SockaddrStorage> {
    let fd = raw(&fd);
    trace::syscall(
        &Spec::new("getsockname").fills(),
        || Args::new().fd(fd),
        || nix_socket::getsockname::<SockaddrStorage>(fd),
        name_out,
    )
}

/// `getpeername(fd, addr, len)`: the address at the other end of a connected socket.
///
/// # Errors
/// `ENOTCONN` when the socket is not connected.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getpeername.2.html>
pub fn getpeername(fd: impl AsFd) -> nix::Result<SockaddrStorage> {
    let fd = raw(&fd);
    trace::syscall(
        &Spec::new("getpeername").fills(),
        || Args::new().fd(fd),
        || nix_socket::getpeername::<SockaddrStorage>(fd),
        name_out,
    )
}

/// nix asks with a buffer the size of sockaddr_storage (128 bytes); the kernel says how much it used.
fn name_out(result: &nix::Result<SockaddrStorage>) -> Finish {
    let capacity = std::mem::size_of::<libc::sockaddr_storage>() as u32;
    let args = match result {
        Ok(addr) => Args::new()
            .addr(addr)
            .text(render::length_in_out(capacity, family_len(addr))),
        Err(_) => Args::new().unknown_pointer().text(format!("[{capacity}]")),
    };
    Finish::with(result, |_| vec![Piece::Int(0)]).args(args)
}

/// How many bytes of a storage the kernel filled in: the size of the family's own struct.
pub(crate) fn family_len(addr: &SockaddrStorage) -> u32 {
    addr.with(|a| a.len())
}

/// `shutdown(fd, how)`: ends one direction (SHUT_WR sends FIN) without closing the descriptor.
///
/// # Errors
/// `ENOTCONN` when the socket is not connected.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/shutdown.2.html>
pub fn shutdown(fd: impl AsFd, how: Shutdown) -> nix::Result<()> {
    let fd = raw(&fd);
    let how_text = match how {
        Shutdown::Read => "SHUT_RD",
        Shutdown::Write => "SHUT_WR",
        Shutdown::Both => "SHUT_RDWR",
    };
    trace::syscall(
        &Spec::new("shutdown"),
        || Args::new().fd(fd).text(how_text),
        || nix_socket::shutdown(fd, how),
        |result| {
            if result.is_ok() {
                context::table().shut_down(fd, how != Shutdown::Read);
            }
            Finish::of(result)
        },
    )
}

/// A socket option the trace can name and whose value it can print as strace does.
pub trait OptionName {
    /// The value's type in nix (`bool`, `usize`, `libc::linger`, `TimeVal`...).
    type Value;
    /// `("SOL_SOCKET", "SO_REUSEADDR")`.
    const NAME: (&'static str, &'static str);
    /// The value and its size in bytes, as setsockopt's last two arguments show them.
    fn show(value: &Self::Value) -> (Vec<Piece>, usize);
    /// What reading this option back tells the trace about the descriptor (SO_ERROR: how a
    /// non-blocking connect ended).
    fn read_back(_fd: std::os::fd::RawFd, _value: &Self::Value) {}
}

macro_rules! int_option {
    ($opt:ty, $value:ty, $level:literal, $name:literal) => {
        impl OptionName for $opt {
            type Value = $value;
            const NAME: (&'static str, &'static str) = ($level, $name);
            fn show(value: &$value) -> (Vec<Piece>, usize) {
                (
                    vec![Piece::text("["), Piece::Int(*value as i64), Piece::text("]")],
                    std::mem::size_of::<libc::c_int>(),
                )
            }
        }
    };
}

int_option!(sockopt::ReuseAddr, bool, "SOL_SOCKET", "SO_REUSEADDR");
int_option!(sockopt::ReusePort, bool, "SOL_SOCKET", "SO_REUSEPORT");
int_option!(sockopt::KeepAlive, bool, "SOL_SOCKET", "SO_KEEPALIVE");
int_option!(sockopt::AcceptConn, bool, "SOL_SOCKET", "SO_ACCEPTCONN");
int_option!(sockopt::RcvBuf, usize, "SOL_SOCKET", "SO_RCVBUF");
int_option!(sockopt::SndBuf, usize, "SOL_SOCKET", "SO_SNDBUF");
int_option!(sockopt::TcpNoDelay, bool, "SOL_TCP", "TCP_NODELAY");
int_option!(sockopt::TcpKeepIdle, u32, "SOL_TCP", "TCP_KEEPIDLE");
int_option!(sockopt::TcpKeepInterval, u32, "SOL_TCP", "TCP_KEEPINTVL");
int_option!(sockopt::TcpKeepCount, u32, "SOL_TCP", "TCP_KEEPCNT");
int_option!(sockopt::Ipv6V6Only, bool, "SOL_IPV6", "IPV6_V6ONLY");

impl OptionName for sockopt::Linger {
    type Value = libc::linger;
    const NAME: (&'static str, &'static str) = ("SOL_SOCKET", "SO_LINGER");
    fn show(value: &libc::linger) -> (Vec<Piece>, usize) {
        let text = format!("{{l_onoff={}, l_linger={}}}", value.l_onoff, value.l_linger);
        (vec![Piece::text(text)], std::mem::size_of::<libc::linger>())
    }
}

/// strace 6.1 names these by their x86_64 numbers (`SO_RCVTIMEO_OLD`) and, not decoding the
/// struct, prints its 16 bytes as a string.
macro_rules! timeval_option {
    ($opt:ty, $name:literal) => {
        impl OptionName for $opt {
            type Value = nix::sys::time::TimeVal;
            const NAME: (&'static str, &'static str) = ("SOL_SOCKET", $name);
            fn show(value: &nix::sys::time::TimeVal) -> (Vec<Piece>, usize) {
                let mut bytes = value.tv_sec().to_ne_bytes().to_vec();
                bytes.extend_from_slice(&value.tv_usec().to_ne_bytes());
                (vec![Piece::bytes(&bytes)], bytes.len())
            }
        }
    };
}

timeval_option!(sockopt::ReceiveTimeout, "SO_RCVTIMEO_OLD");
timeval_option!(sockopt::SendTimeout, "SO_SNDTIMEO_OLD");

impl OptionName for sockopt::SockType {
    type Value = SockType;
    const NAME: (&'static str, &'static str) = ("SOL_SOCKET", "SO_TYPE");
    fn show(value: &SockType) -> (Vec<Piece>, usize) {
        (
            vec![Piece::text(format!("[{}]", *value as i32))],
            std::mem::size_of::<libc::c_int>(),
        )
    }
}

/// The pending error, printed by its name: `[ECONNREFUSED]`, or `[0]` for none.
impl OptionName for sockopt::SocketError {
    type Value = i32;
    const NAME: (&'static str, &'static str) = ("SOL_SOCKET", "SO_ERROR");
    fn show(value: &i32) -> (Vec<Piece>, usize) {
        let shown = if *value == 0 {
            "0".into()
        } else {
            render::errno_name(Errno::from_raw(*value))
        };
        (
            vec![Piece::text(format!("[{shown}]"))],
            std::mem::size_of::<libc::c_int>(),
        )
    }

    fn read_back(fd: std::os::fd::RawFd, value: &i32) {
        context::table().pending_error(fd, *value);
    }
}

/// `setsockopt(fd, level, name, value, len)`: changes one setting of the socket.
///
/// # Errors
/// `ENOPROTOOPT` for an option the socket's protocol lacks; `EINVAL` for a bad value.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/setsockopt.2.html>, <https://man7.org/linux/man-pages/man7/socket.7.html>
pub fn setsockopt<O>(fd: impl AsFd, option: O, value: &O::Value) -> nix::Result<()>
where
    O: SetSockOpt<Val = <O as OptionName>::Value> + OptionName,
{
    let (level, name) = O::NAME;
    trace::syscall(
        &Spec::new("setsockopt"),
        || {
            let (shown, size) = O::show(value);
            Args::new()
                .fd(raw(&fd))
                .text(level)
                .text(name)
                .arg(shown)
                .int(size as i64)
        },
        || nix_socket::setsockopt(&fd, option, value),
        Finish::of,
    )
}

/// `getsockopt(fd, level, name, value, len)`: reads one setting back.
///
/// # Errors
/// `ENOPROTOOPT`; reading `SO_ERROR` returns the pending error and clears it.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getsockopt.2.html>, <https://man7.org/linux/man-pages/man7/socket.7.html>
pub fn getsockopt<O>(fd: impl AsFd, option: O) -> nix::Result<O::Value>
where
    O: GetSockOpt<Val = <O as OptionName>::Value> + OptionName,
{
    let (level, name) = O::NAME;
    let number = raw(&fd);
    trace::syscall(
        &Spec::new("getsockopt").fills(),
        || Args::new().fd(number).text(level).text(name),
        || nix_socket::getsockopt(&fd, option),
        |result| {
            let args = match result {
                Ok(value) => {
                    O::read_back(number, value);
                    let (shown, size) = O::show(value);
                    Args::new().arg(shown).text(format!("[{size}]"))
                }
                Err(_) => Args::new().unknown_pointer().unknown_pointer(),
            };
            Finish::with(result, |_| vec![Piece::Int(0)]).args(args)
        },
    )
}
