//! strace 6.1's way of printing arguments: strings, addresses, flags, errors, sets.
//!
//! Each function returns the text strace would print for one argument, so a wrapper in
//! `src/sys` builds its line from these pieces and a learner can hold it against `strace -f`.

use std::fmt::Write as _;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// strace's default string limit (`-s 32`): longer buffers are cut and followed by `...`.
pub const STRING_LIMIT: usize = 32;

/// A byte buffer as strace quotes it: C escapes, octal for the rest, cut at 32 bytes.
pub fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(STRING_LIMIT)];
    let mut out = String::with_capacity(shown.len() + 2);
    out.push('"');
    for (i, &b) in shown.iter().enumerate() {
        let next_is_digit = shown.get(i + 1).is_some_and(|n| (b'0'..=b'7').contains(n));
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\x0c' => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'\x0b' => out.push_str("\\v"),
            0x20..=0x7e => out.push(b as char),
            _ if next_is_digit => {
                let _ = write!(out, "\\{b:03o}");
            }
            _ => {
                let _ = write!(out, "\\{b:o}");
            }
        }
    }
    out.push('"');
    if bytes.len() > STRING_LIMIT {
        out.push_str("...");
    }
    out
}

/// An output buffer: its contents when the call filled it, its address when it did not.
pub fn buffer_out<T>(buf: &[u8], result: &nix::Result<T>, filled: impl Fn(&T) -> usize) -> String {
    match result {
        Ok(value) => quote(&buf[..filled(value).min(buf.len())]),
        Err(_) => pointer(buf.as_ptr()),
    }
}

/// A pointer the kernel did not fill (or strace does not decode), printed as its address.
pub fn pointer<T>(ptr: *const T) -> String {
    if ptr.is_null() {
        "NULL".into()
    } else {
        format!("{ptr:p}")
    }
}

/// A call's result: the value, or `-1 ENAME (strerror text)`.
pub fn result<T>(result: &nix::Result<T>, ok: impl FnOnce(&T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(errno) => error(*errno),
    }
}

/// `-1 EAGAIN (Resource temporarily unavailable)`, the way strace ends a failed call.
pub fn error(errno: Errno) -> String {
    format!("-1 {} ({})", errno_name(errno), strerror(errno))
}

/// The errno's symbolic name; EWOULDBLOCK is EAGAIN on Linux and strace says EAGAIN.
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

/// glibc's message for an errno (what strace prints in parentheses).
pub fn strerror(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    match text.rfind(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// Flags as strace prints them: known names joined by `|`, leftovers in hex, `0` for none.
pub fn flags(value: i64, table: &[(i64, &str)]) -> String {
    let mut names = Vec::new();
    let mut left = value;
    for &(bit, name) in table {
        if bit != 0 && left & bit == bit {
            names.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 || names.is_empty() {
        names.push(format!("{left:#x}").replace("0x0", "0"));
    }
    names.join("|")
}

/// The one name that matches `value` exactly, or the number itself.
pub fn constant(value: i64, table: &[(i64, &str)]) -> String {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or_else(|| value.to_string(), |(_, name)| name.to_string())
}

pub const ADDRESS_FAMILIES: &[(i64, &str)] = &[
    (libc::AF_UNSPEC as i64, "AF_UNSPEC"),
    (libc::AF_UNIX as i64, "AF_UNIX"),
    (libc::AF_INET as i64, "AF_INET"),
    (libc::AF_INET6 as i64, "AF_INET6"),
    (libc::AF_NETLINK as i64, "AF_NETLINK"),
];

pub const SOCKET_TYPES: &[(i64, &str)] = &[
    (libc::SOCK_STREAM as i64, "SOCK_STREAM"),
    (libc::SOCK_DGRAM as i64, "SOCK_DGRAM"),
    (libc::SOCK_RAW as i64, "SOCK_RAW"),
    (libc::SOCK_SEQPACKET as i64, "SOCK_SEQPACKET"),
];

pub const SOCKET_FLAGS: &[(i64, &str)] = &[
    (libc::SOCK_CLOEXEC as i64, "SOCK_CLOEXEC"),
    (libc::SOCK_NONBLOCK as i64, "SOCK_NONBLOCK"),
];

pub const MSG_FLAGS: &[(i64, &str)] = &[
    (libc::MSG_OOB as i64, "MSG_OOB"),
    (libc::MSG_PEEK as i64, "MSG_PEEK"),
    (libc::MSG_DONTROUTE as i64, "MSG_DONTROUTE"),
    (libc::MSG_CTRUNC as i64, "MSG_CTRUNC"),
    (libc::MSG_TRUNC as i64, "MSG_TRUNC"),
    (libc::MSG_DONTWAIT as i64, "MSG_DONTWAIT"),
    (libc::MSG_EOR as i64, "MSG_EOR"),
    (libc::MSG_WAITALL as i64, "MSG_WAITALL"),
    (libc::MSG_CONFIRM as i64, "MSG_CONFIRM"),
    (libc::MSG_ERRQUEUE as i64, "MSG_ERRQUEUE"),
    (libc::MSG_NOSIGNAL as i64, "MSG_NOSIGNAL"),
    (libc::MSG_MORE as i64, "MSG_MORE"),
];

/// `SOCK_STREAM|SOCK_CLOEXEC`: the type in the low bits, creation flags above it.
pub fn socket_type(value: i32) -> String {
    let kind = value & 0xf;
    let mut out = constant(kind as i64, SOCKET_TYPES);
    let extra = (value & !0xf) as i64;
    if extra != 0 {
        out.push('|');
        out.push_str(&flags(extra, SOCKET_FLAGS));
    }
    out
}

/// The protocol argument of socket(2): strace names it only for the inet families.
pub fn protocol(family: i32, protocol: i32) -> String {
    const PROTOCOLS: &[(i64, &str)] = &[
        (libc::IPPROTO_IP as i64, "IPPROTO_IP"),
        (libc::IPPROTO_TCP as i64, "IPPROTO_TCP"),
        (libc::IPPROTO_UDP as i64, "IPPROTO_UDP"),
        (libc::IPPROTO_ICMP as i64, "IPPROTO_ICMP"),
    ];
    if family == libc::AF_INET || family == libc::AF_INET6 {
        constant(protocol as i64, PROTOCOLS)
    } else {
        protocol.to_string()
    }
}

/// A socket address, `{sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}`.
pub fn sockaddr(addr: &dyn SockaddrLike) -> String {
    // SAFETY: a SockaddrLike promises that as_ptr() points to a valid sockaddr of len() bytes.
    let storage = unsafe { SockaddrStorage::from_raw(addr.as_ptr(), Some(addr.len())) };
    match storage {
        Some(storage) => sockaddr_storage(&storage),
        None => format!("{{sa_family={}}}", addr.family().map_or(0, |f| f as i32)),
    }
}

fn sockaddr_storage(addr: &SockaddrStorage) -> String {
    if let Some(v4) = addr.as_sockaddr_in() {
        format!(
            "{{sa_family=AF_INET, sin_port=htons({}), sin_addr=inet_addr(\"{}\")}}",
            v4.port(),
            v4.ip()
        )
    } else if let Some(v6) = addr.as_sockaddr_in6() {
        format!(
            "{{sa_family=AF_INET6, sin6_port=htons({}), sin6_flowinfo=htonl({}), \
             inet_pton(AF_INET6, \"{}\", &sin6_addr), sin6_scope_id={}}}",
            v6.port(),
            v6.flowinfo(),
            v6.ip(),
            v6.scope_id()
        )
    } else if let Some(unix) = addr.as_unix_addr() {
        if let Some(path) = unix.path() {
            format!(
                "{{sa_family=AF_UNIX, sun_path={}}}",
                quote_path(path.as_os_str().as_encoded_bytes())
            )
        } else if let Some(name) = unix.as_abstract() {
            format!("{{sa_family=AF_UNIX, sun_path=@{}}}", quote_path(name))
        } else {
            "{sa_family=AF_UNIX}".into()
        }
    } else {
        format!(
            "{{sa_family={}}}",
            constant(addr.family().map_or(0, |f| f as i64), ADDRESS_FAMILIES)
        )
    }
}

/// Paths are not cut at 32 bytes the way data is.
fn quote_path(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(b as char),
            _ => {
                let _ = write!(text, "\\{b:o}");
            }
        }
    }
    text.push('"');
    text
}

/// A value-result length: `[16]` when unchanged, `[128 => 16]` when the kernel changed it.
pub fn length_in_out(before: u32, after: u32) -> String {
    if before == after {
        format!("[{before}]")
    } else {
        format!("[{before} => {after}]")
    }
}

/// An fd_set as strace prints it: the members separated by spaces, `[3 4]`.
pub fn fd_list(fds: &[RawFd]) -> String {
    let items: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    format!("[{}]", items.join(" "))
}

/// A struct timespec, `{tv_sec=1, tv_nsec=0}`.
pub fn timespec(secs: i64, nanos: i64) -> String {
    format!("{{tv_sec={secs}, tv_nsec={nanos}}}")
}

/// A struct timeval, `{tv_sec=1, tv_usec=500000}`.
pub fn timeval(secs: i64, micros: i64) -> String {
    format!("{{tv_sec={secs}, tv_usec={micros}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_strace() {
        assert_eq!(quote(b"hello\n"), r#""hello\n""#);
        assert_eq!(quote(b"a\"b\\c\t\r"), r#""a\"b\\c\t\r""#);
        assert_eq!(quote(b"\x001\x01x"), r#""\0001\1x""#);
        assert_eq!(quote("é".as_bytes()), r#""\303\251""#);
        let long = [b'x'; 40];
        assert_eq!(quote(&long), format!("\"{}\"...", "x".repeat(32)));
        assert_eq!(quote(&long[..32]), format!("\"{}\"", "x".repeat(32)));
    }

    #[test]
    fn renders_addresses_and_flags() {
        let addr = SockaddrStorage::from("127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(
            sockaddr(&addr),
            r#"{sa_family=AF_INET, sin_port=htons(7000), sin_addr=inet_addr("127.0.0.1")}"#
        );
        let v6 = SockaddrStorage::from("[::1]:9999".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(
            sockaddr(&v6),
            r#"{sa_family=AF_INET6, sin6_port=htons(9999), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}"#
        );
        assert_eq!(
            socket_type(libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
            "SOCK_STREAM|SOCK_CLOEXEC"
        );
        assert_eq!(flags(0, MSG_FLAGS), "0");
        assert_eq!(flags(libc::MSG_NOSIGNAL as i64, MSG_FLAGS), "MSG_NOSIGNAL");
        assert_eq!(error(Errno::EAGAIN), "-1 EAGAIN (Resource temporarily unavailable)");
        assert_eq!(fd_list(&[3, 4]), "[3 4]");
        assert_eq!(length_in_out(128, 16), "[128 => 16]");
    }
}
