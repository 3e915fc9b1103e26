//! strace 6.1's way of printing a call: strings, addresses, flags, errors, sets, whole lines.
//!
//! A call's pieces ([`Piece`]) are rendered in one of two forms: [`Form::Verbatim`], exactly
//! as strace prints them (the human and JSON traces), or [`Form::Normalised`], with the values
//! that change from run to run replaced by words (`PORT`, `0xADDR`, `PID`, `{…}`), which is
//! what `expected.trace` files hold.
//!
//! Narration and the bytes a call carried are free text, so they get one text rule instead
//! ([`ports_in_text`]): a number after `127.0.0.1:`, `0.0.0.0:`, `]:` or `port ` is a port,
//! one after `pid ` a pid, after `uid ` or `gid ` a user or group, after `socket:[` an inode;
//! and mkdtemp's six random characters in a lesson's private name (`socklab-18.k3J9xq`) are
//! `XXXXXX`, as in paths.

use std::fmt::Write as _;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

pub use super::pieces::STRING_LIMIT;
use super::pieces::{Args, FlagTable, Piece};

/// How a trace shows values that change from run to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// As strace prints them: `htons(40123)`, `0x7ffd9a1c65a0`, `= 4242`.
    Verbatim,
    /// As `expected.trace` holds them: `htons(PORT)`, `0xADDR`, `= PID`.
    Normalised,
}

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

/// An output buffer: its contents when the call filled `filled` bytes of it, its address
/// when the call failed and filled nothing.
pub fn buffer_out(buf: &[u8], filled: Option<usize>) -> Piece {
    match filled {
        Some(n) => Piece::bytes(&buf[..n.min(buf.len())]),
        None => Piece::pointer(buf.as_ptr()),
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
pub fn flags(value: i64, table: &FlagTable) -> String {
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
pub fn constant(value: i64, table: &FlagTable) -> String {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or_else(|| value.to_string(), |(_, name)| name.to_string())
}

pub const ADDRESS_FAMILIES: &FlagTable = &[
    (libc::AF_UNSPEC as i64, "AF_UNSPEC"),
    (libc::AF_UNIX as i64, "AF_UNIX"),
    (libc::AF_INET as i64, "AF_INET"),
    (libc::AF_INET6 as i64, "AF_INET6"),
    (libc::AF_NETLINK as i64, "AF_NETLINK"),
];

pub const SOCKET_TYPES: &FlagTable = &[
    (libc::SOCK_STREAM as i64, "SOCK_STREAM"),
    (libc::SOCK_DGRAM as i64, "SOCK_DGRAM"),
    (libc::SOCK_RAW as i64, "SOCK_RAW"),
    (libc::SOCK_SEQPACKET as i64, "SOCK_SEQPACKET"),
];

pub const SOCKET_FLAGS: &FlagTable = &[
    (libc::SOCK_CLOEXEC as i64, "SOCK_CLOEXEC"),
    (libc::SOCK_NONBLOCK as i64, "SOCK_NONBLOCK"),
];

pub const MSG_FLAGS: &FlagTable = &[
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
    (libc::MSG_CMSG_CLOEXEC as i64, "MSG_CMSG_CLOEXEC"),
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
    const PROTOCOLS: &FlagTable = &[
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
    pieces(&sockaddr_pieces(addr), Form::Verbatim)
}

/// A socket address as pieces, its port one of them.
pub fn sockaddr_pieces(addr: &dyn SockaddrLike) -> Vec<Piece> {
    // SAFETY: a SockaddrLike promises that as_ptr() points to a valid sockaddr of len() bytes.
    let storage = unsafe { SockaddrStorage::from_raw(addr.as_ptr(), Some(addr.len())) };
    match storage {
        Some(storage) => storage_pieces(&storage),
        None => vec![Piece::text(format!(
            "{{sa_family={}}}",
            addr.family().map_or(0, |f| f as i32)
        ))],
    }
}

fn storage_pieces(addr: &SockaddrStorage) -> Vec<Piece> {
    if let Some(v4) = addr.as_sockaddr_in() {
        vec![
            Piece::text("{sa_family=AF_INET, sin_port=htons("),
            Piece::Port(v4.port()),
            Piece::text(format!("), sin_addr=inet_addr(\"{}\")}}", v4.ip())),
        ]
    } else if let Some(v6) = addr.as_sockaddr_in6() {
        vec![
            Piece::text("{sa_family=AF_INET6, sin6_port=htons("),
            Piece::Port(v6.port()),
            Piece::text(format!(
                "), sin6_flowinfo=htonl({}), inet_pton(AF_INET6, \"{}\", &sin6_addr), sin6_scope_id={}}}",
                v6.flowinfo(),
                v6.ip(),
                v6.scope_id()
            )),
        ]
    } else if let Some(unix) = addr.as_unix_addr() {
        // A name starting with a NUL byte is abstract: strace prints the rest after `@`.
        if let Some(path) = unix.path() {
            vec![
                Piece::text("{sa_family=AF_UNIX, sun_path="),
                Piece::path(path.as_os_str().as_encoded_bytes()),
                Piece::text("}"),
            ]
        } else if let Some(name) = unix.as_abstract() {
            vec![
                Piece::text("{sa_family=AF_UNIX, sun_path=@"),
                Piece::path(name),
                Piece::text("}"),
            ]
        } else {
            // Unnamed: a socket that never bound (a client), or a socketpair's.
            vec![Piece::text("{sa_family=AF_UNIX}")]
        }
    } else {
        vec![Piece::text(format!(
            "{{sa_family={}}}",
            constant(addr.family().map_or(0, |f| f as i64), ADDRESS_FAMILIES)
        ))]
    }
}

/// Paths are not cut at 32 bytes the way data is.
pub fn quote_path(bytes: &[u8]) -> String {
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

/// One piece, in the form asked for.
pub fn piece(piece: &Piece, form: Form, out: &mut String) {
    let normalised = form == Form::Normalised;
    match piece {
        Piece::Text(text) => out.push_str(text),
        Piece::Fd(fd) => {
            let _ = write!(out, "{fd}");
        }
        Piece::Int(value) => {
            let _ = write!(out, "{value}");
        }
        Piece::Flags { bits, table } => out.push_str(&flags(*bits, table)),
        Piece::Bytes { head, len } => {
            let mut text = quote(head);
            if *len > head.len() {
                text.push_str("...");
            }
            if normalised {
                text = ports_in_text(&text);
            }
            out.push_str(&text);
        }
        Piece::Port(port) if normalised && *port != 0 => out.push_str("PORT"),
        Piece::Port(port) => {
            let _ = write!(out, "{port}");
        }
        Piece::Pointer(Some(0)) => out.push_str("NULL"),
        Piece::Pointer(Some(address)) if !normalised => {
            let _ = write!(out, "{address:#x}");
        }
        Piece::Pointer(_) => out.push_str("0xADDR"),
        Piece::Pid(_) if normalised => out.push_str("PID"),
        Piece::Pid(pid) => {
            let _ = write!(out, "{pid}");
        }
        Piece::TimeLeft { .. } if normalised => out.push_str("{…}"),
        Piece::TimeLeft { secs, nanos } => out.push_str(&timespec(*secs, *nanos)),
        Piece::Path(bytes) if normalised => out.push_str(&unique_names(&quote_path(bytes))),
        Piece::Path(bytes) => out.push_str(&quote_path(bytes)),
        Piece::Uid(_) if normalised => out.push_str("UID"),
        Piece::Gid(_) if normalised => out.push_str("GID"),
        Piece::Uid(id) | Piece::Gid(id) => {
            let _ = write!(out, "{id}");
        }
    }
}

/// A run of pieces, in the form asked for.
pub fn pieces(run: &[Piece], form: Form) -> String {
    let mut out = String::new();
    for one in run {
        piece(one, form, &mut out);
    }
    out
}

/// Arguments as strace separates them: `3, "hi", 2`.
pub fn args(args: &Args, form: Form) -> String {
    let rendered: Vec<String> = args.0.iter().map(|arg| pieces(arg, form)).collect();
    rendered.join(", ")
}

/// What follows `=`: the value, `-1 ENAME (strerror text)` for an error, `?` for a call
/// that never returned.
pub fn ret(ret: &[Piece], errno: Option<i32>, form: Form) -> String {
    match errno {
        Some(code) => error(Errno::from_raw(code)),
        None if ret.is_empty() => "?".into(),
        None => pieces(ret, form),
    }
}

/// A whole call: `name(before, after) = ret`, `=` at column 40.
///
/// The two halves are joined with `, `, unless the second already begins with its own
/// separator, as some of strace's do: clone's exit half is `, child_tidptr=…`, clone3's
/// ` => {parent_tid=[…]}, 88` (read back from strace by `strace.rs`).
pub fn whole_line(name: &str, before: &Args, after: &Args, ret_text: &str, form: Form) -> String {
    let after_text = args(after, form);
    let joined = if after_text.starts_with([',', ' ']) {
        args(before, form) + &after_text
    } else {
        let mut all = before.clone();
        all.0.extend(after.0.iter().cloned());
        args(&all, form)
    };
    strace_line(&format!("{name}({joined})"), ret_text)
}

/// The first half of a call that blocked while others acted: `accept4(3,  <unfinished ...>`.
/// strace has printed the arguments known on entry, and a comma if more follow.
pub fn unfinished_line(name: &str, before: &Args, after_follows: bool, form: Form) -> String {
    let comma = if after_follows && !before.is_empty() { ", " } else { "" };
    format!("{name}({}{comma} <unfinished ...>", args(before, form))
}

/// The second half: `<... accept4 resumed>{sa_family=AF_INET, …}, [128 => 16], 0) = 4`.
pub fn resumed_line(name: &str, after: &Args, ret_text: &str, form: Form) -> String {
    strace_line(&format!("<... {name} resumed>{})", args(after, form)), ret_text)
}

/// strace puts `=` at column 40: `format!("{call:<39} = {ret}")`.
pub fn strace_line(call: &str, ret: &str) -> String {
    format!("{call:<39} = {ret}")
}

/// The text rule for narration and carried bytes: `127.0.0.1:40123` and `[::1]:40123` become
/// `…:PORT`, `port 40123` becomes `port PORT` (`port 0` stays), `pid 1234` becomes `pid PID`,
/// `uid 0` and `gid 0` become `uid UID` and `gid GID`, `socket:[48213]` becomes
/// `socket:[INODE]`, and a lesson's unique name `socklab-18.k3J9xq` becomes `socklab-18.XXXXXX`.
pub fn ports_in_text(text: &str) -> String {
    let mut out = text.to_string();
    for prefix in ["127.0.0.1:", "0.0.0.0:", "]:", "port "] {
        out = numbers_after(&out, prefix, "PORT");
    }
    out = numbers_after(&out, "pid ", "PID");
    out = numbers_after(&out, "uid ", "UID");
    out = numbers_after(&out, "gid ", "GID");
    out = numbers_after(&out, "socket:[", "INODE");
    unique_names(&out)
}

/// How the lessons name what must be unique to one run (a private directory, an abstract
/// socket name): mkdtemp's template `socklab-NN.XXXXXX`, NN the lesson's number.
pub const UNIQUE_NAME_PREFIX: &str = "socklab-";

/// `socklab-18.k3J9xq` becomes `socklab-18.XXXXXX`: the six characters mkdtemp chose.
fn unique_names(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(UNIQUE_NAME_PREFIX) {
        let after = &rest[at + UNIQUE_NAME_PREFIX.len()..];
        out.push_str(&rest[..at + UNIQUE_NAME_PREFIX.len()]);
        let bytes = after.as_bytes();
        let is_unique = bytes.len() >= 9
            && bytes[..2].iter().all(u8::is_ascii_digit)
            && bytes[2] == b'.'
            && bytes[3..9].iter().all(u8::is_ascii_alphanumeric);
        if is_unique {
            out.push_str(&after[..3]);
            out.push_str("XXXXXX");
            rest = &after[9..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Every number right after `prefix` becomes `word`, except a port 0 spelled `port 0`.
fn numbers_after(text: &str, prefix: &str, word: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(&rest[..at + prefix.len()]);
        let number = &after[..digits];
        let keep = digits == 0 || (prefix == "port " && number == "0");
        out.push_str(if keep { number } else { word });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A measurement's numbers all become `N`: `spun 1234 times in 5.2 ms` is `spun N times in N ms`.
pub fn digits_to_n(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
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
        let path = nix::sys::socket::UnixAddr::new("echo.sock").unwrap();
        assert_eq!(sockaddr(&path), r#"{sa_family=AF_UNIX, sun_path="echo.sock"}"#);
        let name = nix::sys::socket::UnixAddr::new_abstract(b"socklab-18.k3J9xq").unwrap();
        assert_eq!(sockaddr(&name), r#"{sa_family=AF_UNIX, sun_path=@"socklab-18.k3J9xq"}"#);
        assert_eq!(
            super::args(&Args::new().addr(&name), Form::Normalised),
            r#"{sa_family=AF_UNIX, sun_path=@"socklab-18.XXXXXX"}"#
        );
        assert_eq!(
            sockaddr(&nix::sys::socket::UnixAddr::new_unnamed()),
            "{sa_family=AF_UNIX}"
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
        assert_eq!(
            flags((libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as i64, MSG_FLAGS),
            "MSG_DONTWAIT|MSG_CMSG_CLOEXEC"
        );
        assert_eq!(error(Errno::EAGAIN), "-1 EAGAIN (Resource temporarily unavailable)");
        assert_eq!(fd_list(&[3, 4]), "[3 4]");
        assert_eq!(length_in_out(128, 16), "[128 => 16]");
    }

    #[test]
    fn pieces_render_verbatim_or_normalised() {
        let addr = SockaddrStorage::from("127.0.0.1:40123".parse::<std::net::SocketAddr>().unwrap());
        let args = Args::new()
            .fd(3)
            .addr(&addr)
            .pointer(0x7ffd9a1c65a0usize as *const u8)
            .pointer(std::ptr::null::<u8>())
            .pid(4242);
        assert_eq!(
            super::args(&args, Form::Verbatim),
            r#"3, {sa_family=AF_INET, sin_port=htons(40123), sin_addr=inet_addr("127.0.0.1")}, 0x7ffd9a1c65a0, NULL, 4242"#
        );
        assert_eq!(
            super::args(&args, Form::Normalised),
            r#"3, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr("127.0.0.1")}, 0xADDR, NULL, PID"#
        );
        let bound = SockaddrStorage::from("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap());
        assert!(super::args(&Args::new().addr(&bound), Form::Normalised).contains("htons(0)"));
        let left = [Piece::text("left "), Piece::TimeLeft { secs: 0, nanos: 99 }];
        assert_eq!(pieces(&left, Form::Verbatim), "left {tv_sec=0, tv_nsec=99}");
        assert_eq!(pieces(&left, Form::Normalised), "left {…}");
        let long = Args::new().bytes(&[b'x'; 40]);
        assert_eq!(super::args(&long, Form::Verbatim), format!("\"{}\"...", "x".repeat(32)));
        let chat = Args::new().bytes(b"12:00:00 127.0.0.1:40122 say: hi");
        assert_eq!(
            super::args(&chat, Form::Normalised),
            r#""12:00:00 127.0.0.1:PORT say: hi""#
        );
    }

    #[test]
    fn lines_put_the_result_at_column_40_and_split_like_strace() {
        assert_eq!(
            strace_line("listen(3, 128)", "0"),
            format!("listen(3, 128){} = 0", " ".repeat(25))
        );
        let long = "x".repeat(45);
        assert_eq!(strace_line(&long, "0"), format!("{long} = 0"));
        let before = Args::new().fd(3);
        let after = Args::new().text("NULL").text("NULL").text("SOCK_CLOEXEC");
        assert_eq!(
            unfinished_line("accept4", &before, true, Form::Verbatim),
            "accept4(3,  <unfinished ...>"
        );
        assert_eq!(
            unfinished_line("sendto", &before, false, Form::Verbatim),
            "sendto(3 <unfinished ...>"
        );
        assert_eq!(
            resumed_line("accept4", &after, "4", Form::Verbatim),
            strace_line("<... accept4 resumed>NULL, NULL, SOCK_CLOEXEC)", "4")
        );
        let clone_exit = Args::new().text(", child_tidptr=0x7f0000000310");
        let clone_entry = Args::new().text("child_stack=NULL, flags=SIGCHLD");
        assert_eq!(
            whole_line("clone", &clone_entry, &clone_exit, "42", Form::Verbatim),
            "clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x7f0000000310) = 42"
        );
        assert_eq!(ret(&[], None, Form::Verbatim), "?");
        assert_eq!(
            ret(&[], Some(libc::EAGAIN), Form::Verbatim),
            "-1 EAGAIN (Resource temporarily unavailable)"
        );
    }

    #[test]
    fn the_text_rule_names_ports_and_pids() {
        assert_eq!(
            ports_in_text("listening on 127.0.0.1:7000"),
            "listening on 127.0.0.1:PORT"
        );
        assert_eq!(
            ports_in_text("[::1]:7000 and port 0, port 9"),
            "[::1]:PORT and port 0, port PORT"
        );
        assert_eq!(ports_in_text("child pid 4242 ended"), "child pid PID ended");
        assert_eq!(
            ports_in_text("pid 7 uid 1000 gid 100: fd 5 is socket:[48213]"),
            "pid PID uid UID gid GID: fd 5 is socket:[INODE]"
        );
        assert_eq!(
            ports_in_text("/tmp/socklab-18.k3J9xq/echo.sock, socklab-18.short, socklab-x"),
            "/tmp/socklab-18.XXXXXX/echo.sock, socklab-18.short, socklab-x"
        );
        assert_eq!(digits_to_n("spun 1234 times in 5.2 ms"), "spun N times in N ms");
    }
}
