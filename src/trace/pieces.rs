//! A call's arguments and result as data: typed pieces, so that normalising is a way of rendering.
//!
//! strace prints `connect(3, {sa_family=AF_INET, sin_port=htons(40123), …}, 16) = 0`. Here that
//! line is kept as pieces: the descriptor 3, text, the port 40123, text, the integer 16. Values
//! that change from run to run (ports, pointers, pids, the time select left) have types of their
//! own, so `expected.trace` can print `PORT` where the human trace prints `40123` without
//! searching text for numbers. So do names made unique for one run (an AF_UNIX socket's
//! abstract name) and the user running the program (a peer's uid and gid).

use std::borrow::Cow;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::SockaddrLike;

use super::render;

/// strace's default string limit (`-s 32`): a buffer shows its first 32 bytes, then `...`.
pub const STRING_LIMIT: usize = 32;

/// A flags table: each bit and the name strace gives it.
pub type FlagTable = [(i64, &'static str)];

/// One piece of an argument or a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Names, punctuation and structure that are the same on every run: `SOL_SOCKET`, `NULL`,
    /// `{sa_family=AF_INET, sin_port=htons(`.
    Text(Cow<'static, str>),
    /// A descriptor number.
    Fd(RawFd),
    /// A number that is the same on every run: a length, a backlog, a count.
    Int(i64),
    /// Flags named from a table: `SOCK_STREAM|SOCK_CLOEXEC`, `0` for none.
    Flags { bits: i64, table: &'static FlagTable },
    /// A buffer: its first [`STRING_LIMIT`] bytes and its full length (strace adds `...` when
    /// there were more).
    Bytes { head: Vec<u8>, len: usize },
    /// A port: the kernel picks it when asked for port 0, so it changes from run to run.
    Port(u16),
    /// An address in memory, or `None` for one glibc chose that the program never sees.
    Pointer(Option<usize>),
    /// A process id.
    Pid(i32),
    /// A time the kernel measured and wrote back (pselect6's time left).
    TimeLeft { secs: i64, nanos: i64 },
    /// A name in the filesystem or in AF_UNIX's abstract namespace, quoted as strace quotes a
    /// path (whole, not cut at 32 bytes). A lesson makes a name unique to its run with mkdtemp's
    /// six random characters (`socklab-18.k3J9xq`): normalised, those print as `XXXXXX`.
    Path(Vec<u8>),
    /// A user id: whoever runs the program (0 for root), so it changes from machine to machine.
    Uid(u32),
    /// A group id, as a user id.
    Gid(u32),
}

impl Piece {
    pub fn text(text: impl Into<Cow<'static, str>>) -> Piece {
        Piece::Text(text.into())
    }

    /// A buffer, keeping only what strace shows of it.
    pub fn bytes(buf: &[u8]) -> Piece {
        Piece::Bytes {
            head: buf[..buf.len().min(STRING_LIMIT)].to_vec(),
            len: buf.len(),
        }
    }

    /// A pointer: `NULL` for a null one.
    pub fn pointer<T>(ptr: *const T) -> Piece {
        Piece::Pointer(Some(ptr as usize))
    }

    /// A path or an abstract name.
    pub fn path(bytes: &[u8]) -> Piece {
        Piece::Path(bytes.to_vec())
    }
}

/// The arguments of a call, each a short run of pieces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args(pub Vec<Vec<Piece>>);

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    /// An argument made of several pieces: `[{fd=3, events=POLLIN}]`, `[128 => 16]`.
    pub fn arg(mut self, pieces: Vec<Piece>) -> Args {
        self.0.push(pieces);
        self
    }

    pub fn text(self, text: impl Into<Cow<'static, str>>) -> Args {
        self.arg(vec![Piece::text(text)])
    }

    pub fn fd(self, fd: RawFd) -> Args {
        self.arg(vec![Piece::Fd(fd)])
    }

    pub fn int(self, value: impl Into<i64>) -> Args {
        self.arg(vec![Piece::Int(value.into())])
    }

    pub fn flags(self, bits: i64, table: &'static FlagTable) -> Args {
        self.arg(vec![Piece::Flags { bits, table }])
    }

    pub fn bytes(self, buf: &[u8]) -> Args {
        self.arg(vec![Piece::bytes(buf)])
    }

    pub fn pointer<T>(self, ptr: *const T) -> Args {
        self.arg(vec![Piece::pointer(ptr)])
    }

    /// A pointer the program never sees (glibc's own): printed as `0xADDR`.
    pub fn unknown_pointer(self) -> Args {
        self.arg(vec![Piece::Pointer(None)])
    }

    pub fn pid(self, pid: i32) -> Args {
        self.arg(vec![Piece::Pid(pid)])
    }

    /// A path: `"echo.sock"`.
    pub fn path(self, bytes: &[u8]) -> Args {
        self.arg(vec![Piece::path(bytes)])
    }

    /// A socket address as strace decodes it, its port a piece of its own.
    pub fn addr(self, addr: &dyn SockaddrLike) -> Args {
        self.arg(render::sockaddr_pieces(addr))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a successful result reads after `=`.
pub trait ToRet {
    fn ret(&self) -> Vec<Piece>;
}

impl ToRet for () {
    fn ret(&self) -> Vec<Piece> {
        vec![Piece::Int(0)]
    }
}

impl ToRet for usize {
    fn ret(&self) -> Vec<Piece> {
        vec![Piece::Int(*self as i64)]
    }
}

impl ToRet for i32 {
    fn ret(&self) -> Vec<Piece> {
        vec![Piece::Int(i64::from(*self))]
    }
}

impl ToRet for OwnedFd {
    fn ret(&self) -> Vec<Piece> {
        vec![Piece::Fd(self.as_raw_fd())]
    }
}

/// A call's name, the row of the notes table that explains it, and whether the kernel fills
/// in arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The kernel's name for the call, as strace prints it.
    pub name: &'static str,
    /// The notes row: the name unless changed (`send()` arrives as `sendto` but means
    /// something else than a datagram's sendto).
    pub note: &'static str,
    /// The kernel fills in arguments (a buffer, an address) that strace prints after the call
    /// returns; a call that blocks shows `recvfrom(4,  <unfinished ...>` with that comma.
    pub fills: bool,
}

impl Spec {
    pub const fn new(name: &'static str) -> Spec {
        Spec {
            name,
            note: name,
            fills: false,
        }
    }

    pub const fn noted_as(self, note: &'static str) -> Spec {
        Spec { note, ..self }
    }

    pub const fn fills(self) -> Spec {
        Spec { fills: true, ..self }
    }
}

/// What a wrapper knows once its call returned: the arguments the kernel filled in, the
/// result as strace prints it, and (when context decides) which note explains it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finish {
    pub args: Args,
    pub ret: Vec<Piece>,
    pub note: Option<&'static str>,
}

impl Finish {
    /// A result that prints as its value: `= 3`, `= 0`, `= 12`.
    pub fn of<T: ToRet>(result: &nix::Result<T>) -> Finish {
        Finish::with(result, ToRet::ret)
    }

    /// A result that prints in a way of its own: `= 1 ([{fd=3, revents=POLLIN}])`.
    pub fn with<T>(result: &nix::Result<T>, ok: impl FnOnce(&T) -> Vec<Piece>) -> Finish {
        Finish {
            ret: result.as_ref().map_or_else(|_| Vec::new(), ok),
            ..Finish::default()
        }
    }

    /// The arguments strace prints after the call returned (buffers, value-result lengths).
    pub fn args(mut self, args: Args) -> Finish {
        self.args = args;
        self
    }

    /// The notes row this call's context chose: `close.listener` rather than `close`.
    pub fn noted_as(mut self, key: &'static str) -> Finish {
        self.note = Some(key);
        self
    }
}
