//! getaddrinfo(3): from a host name and a service to socket addresses. A C library function,
//! not a system call, so it makes no trace record of its own: the lesson narrates it, and the
//! syscalls glibc makes inside it are a stage (`trace::stage`), not the lesson.
//!
//! glibc answers "localhost" from `/etc/hosts` (strace shows `openat`, `read`, `close`), may
//! first try the nscd daemon on a unix socket, and asks DNS over UDP port 53 for names it does
//! not find there. When it returns several addresses it sorts them (RFC 6724), which costs a
//! `socket`/`connect`/`getsockname`/`close` on a UDP socket per address. All of that happens on
//! descriptors it closes again before returning, so it never shifts a lesson's fd numbers.

use std::ffi::{CStr, CString};
use std::fmt;

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::trace::{self, render};

/// What to ask for: `ai_family`, `ai_socktype`, `ai_flags` of the hints (0 means "any").
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints {
    /// `libc::AF_INET`, `libc::AF_INET6`, or `libc::AF_UNSPEC` (0) for both.
    pub family: i32,
    /// `libc::SOCK_STREAM`, `libc::SOCK_DGRAM`, or 0 for every type.
    pub socktype: i32,
    /// `libc::AI_NUMERICHOST` (no lookup at all), `libc::AI_PASSIVE` (a NULL host means the
    /// wildcard), `libc::AI_ADDRCONFIG`...
    pub flags: i32,
}

/// One answer: everything `socket` and `connect`/`bind` need.
#[derive(Clone, Debug)]
pub struct AddrInfo {
    pub family: i32,
    pub socktype: i32,
    pub protocol: i32,
    pub addr: SockaddrStorage,
    /// How many bytes of `addr` the family uses: 16 for sockaddr_in, 28 for sockaddr_in6.
    pub addr_len: u32,
}

impl AddrInfo {
    /// The answer as a socket address with its port, when it is IPv4 or IPv6.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        if let Some(v4) = self.addr.as_sockaddr_in() {
            Some(std::net::SocketAddr::from((v4.ip(), v4.port())))
        } else {
            self.addr
                .as_sockaddr_in6()
                .map(|v6| std::net::SocketAddr::from((v6.ip(), v6.port())))
        }
    }

    /// `AF_INET SOCK_STREAM IPPROTO_TCP 127.0.0.1:7000 (16 bytes)`: the three numbers for
    /// `socket()` and the address for `connect()`, named as strace names them.
    pub fn describe(&self) -> String {
        let address = self
            .socket_addr()
            .map_or_else(|| render::sockaddr(&self.addr), |a| a.to_string());
        format!(
            "{} {} {} {address} ({} bytes)",
            render::constant(self.family as i64, render::ADDRESS_FAMILIES),
            render::constant(self.socktype as i64, render::SOCKET_TYPES),
            render::protocol(self.family, self.protocol),
            self.addr_len
        )
    }
}

/// getaddrinfo's own error codes (`EAI_NONAME`...), which are not errno values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaiError {
    pub code: i32,
    /// For `EAI_SYSTEM`: the errno behind it.
    pub errno: i32,
}

impl GaiError {
    /// The constant's name, as `<netdb.h>` spells it.
    pub fn name(&self) -> &'static str {
        const NAMES: &[(i32, &str)] = &[
            (libc::EAI_AGAIN, "EAI_AGAIN"),
            (libc::EAI_BADFLAGS, "EAI_BADFLAGS"),
            (libc::EAI_FAIL, "EAI_FAIL"),
            (libc::EAI_FAMILY, "EAI_FAMILY"),
            (libc::EAI_MEMORY, "EAI_MEMORY"),
            (libc::EAI_NODATA, "EAI_NODATA"),
            (libc::EAI_NONAME, "EAI_NONAME"),
            (libc::EAI_SERVICE, "EAI_SERVICE"),
            (libc::EAI_SOCKTYPE, "EAI_SOCKTYPE"),
            (libc::EAI_SYSTEM, "EAI_SYSTEM"),
        ];
        NAMES
            .iter()
            .find(|(code, _)| *code == self.code)
            .map_or("EAI_?", |(_, name)| name)
    }
}

impl fmt::Display for GaiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == libc::EAI_SYSTEM {
            let cause = std::io::Error::from_raw_os_error(self.errno);
            return write!(f, "EAI_SYSTEM: {cause}");
        }
        // SAFETY: gai_strerror returns a pointer to a static, NUL-terminated message for any code.
        let text = unsafe { CStr::from_ptr(libc::gai_strerror(self.code)) };
        write!(f, "{}: {}", self.name(), text.to_string_lossy())
    }
}

impl std::error::Error for GaiError {}

/// `getaddrinfo(host, service, hints, &result)`: every address `host` has for `service`, in the
/// order a client should try them.
///
/// # Errors
/// `EAI_NONAME` for a name nobody knows (or a non-numeric host with `AI_NUMERICHOST`),
/// `EAI_SERVICE`, `EAI_FAMILY`, `EAI_AGAIN` (DNS did not answer in time), `EAI_SYSTEM`. A host
/// or service with a NUL byte in it is `EAI_NONAME` without asking.
///
/// # References
/// <https://man7.org/linux/man-pages/man3/getaddrinfo.3.html>
pub fn getaddrinfo(host: Option<&str>, service: Option<&str>, hints: Hints) -> Result<Vec<AddrInfo>, GaiError> {
    let no_name = GaiError {
        code: libc::EAI_NONAME,
        errno: 0,
    };
    let host = host.map(CString::new).transpose().map_err(|_| no_name)?;
    let service = service.map(CString::new).transpose().map_err(|_| no_name)?;
    // SAFETY: an all-zero addrinfo is valid: null pointers and zero numbers.
    let mut c_hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    c_hints.ai_family = hints.family;
    c_hints.ai_socktype = hints.socktype;
    c_hints.ai_flags = hints.flags;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    let (code, errno) = trace::stage(|| {
        // SAFETY: host and service are NUL-terminated strings or null; hints is initialised;
        // list receives a pointer that we free with freeaddrinfo below.
        let code = unsafe {
            libc::getaddrinfo(
                host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
                service.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                &c_hints,
                &mut list,
            )
        };
        (code, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    });
    if code != 0 {
        return Err(GaiError { code, errno });
    }
    let mut answers = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: node is a non-null element of the list getaddrinfo returned, not yet freed.
        let entry = unsafe { &*node };
        // SAFETY: ai_addr points to ai_addrlen bytes of a socket address (or is null, which
        // from_raw refuses).
        let addr = unsafe { SockaddrStorage::from_raw(entry.ai_addr, Some(entry.ai_addrlen)) };
        if let Some(addr) = addr {
            answers.push(AddrInfo {
                family: entry.ai_family,
                socktype: entry.ai_socktype,
                protocol: entry.ai_protocol,
                addr_len: entry.ai_addrlen,
                addr,
            });
        }
        node = entry.ai_next;
    }
    // SAFETY: list came from a successful getaddrinfo and is freed exactly once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(answers)
}
