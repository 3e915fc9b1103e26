//! Lesson 03's claims about addresses, checked against the kernel and glibc: getaddrinfo's
//! answers for "localhost" and "::1", and what it does underneath, under the real strace (reads
//! /etc/hosts for a name, nothing for a numeric address, sorts several answers with a connected
//! UDP socket); sockaddr_in is 16 bytes and sockaddr_in6 28; the port is
//! stored high byte first; port 0 gets a real port; a wildcard listener takes 127.0.0.2 and a
//! 127.0.0.1 one refuses it; getsockname and getpeername agree across a connection; and an
//! IPv6 listener with IPV6_V6ONLY off takes IPv4 clients as ::ffff:127.0.0.1, with it on
//! refuses them. The IPv6 tests skip, saying why, on a machine without ::1.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::util;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage, accept, bind,
    connect, getpeername, getsockname, getsockopt, listen, setsockopt, socket, sockopt,
};
use socklab::sys::netdb::{self, Hints};

fn tcp(family: AddressFamily) -> OwnedFd {
    socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket")
}

fn listener_on(addr: &dyn SockaddrLike, family: AddressFamily, v6only: Option<bool>) -> (OwnedFd, u16) {
    let sock = tcp(family);
    if let Some(only) = v6only {
        setsockopt(&sock, sockopt::Ipv6V6Only, &only).expect("IPV6_V6ONLY");
    }
    bind(sock.as_raw_fd(), addr).expect("bind");
    listen(&sock, Backlog::new(5).expect("a backlog")).expect("listen");
    let bound = getsockname::<SockaddrStorage>(sock.as_raw_fd()).expect("getsockname");
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .expect("an inet address");
    (sock, port)
}

fn v4(ip: [u8; 4], port: u16) -> SockaddrIn {
    SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn v6(ip: Ipv6Addr, port: u16) -> SockaddrIn6 {
    SockaddrIn6::from(SocketAddrV6::new(ip, port, 0, 0))
}

fn accept_one(listener: &OwnedFd) -> OwnedFd {
    let fd = accept(listener.as_raw_fd()).expect("accept");
    // SAFETY: accept succeeded, so fd is a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// How many bytes getsockname filled in: what the kernel says the address's size is.
fn name_len(sock: &OwnedFd) -> u32 {
    // SAFETY: an all-zero sockaddr_storage is a valid value to pass for the kernel to fill.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes; len says how big storage is.
    let ret = unsafe { libc::getsockname(sock.as_raw_fd(), (&raw mut storage).cast(), &mut len) };
    assert_eq!(ret, 0, "getsockname: {}", std::io::Error::last_os_error());
    len
}

/// Whether ::1 can be bound here; the reason when it cannot.
fn ipv6_loopback() -> Result<(), String> {
    let sock = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("no IPv6 sockets here ({e})"))?;
    bind(sock.as_raw_fd(), &v6(Ipv6Addr::LOCALHOST, 0)).map_err(|e| format!("::1 cannot be bound here ({e})"))
}

macro_rules! require_ipv6 {
    () => {
        if let Err(reason) = ipv6_loopback() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

#[test]
fn getaddrinfo_turns_localhost_into_127_0_0_1() {
    let hints = Hints {
        family: libc::AF_INET,
        socktype: libc::SOCK_STREAM,
        flags: 0,
    };
    let answers = netdb::getaddrinfo(Some("localhost"), Some("2525"), hints).expect("getaddrinfo localhost");
    let first = answers.first().expect("at least one answer");
    assert_eq!(first.socket_addr(), Some("127.0.0.1:2525".parse().unwrap()));
    assert_eq!(
        (first.family, first.socktype, first.protocol, first.addr_len),
        (libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP, 16)
    );
    assert_eq!(
        first.describe(),
        "AF_INET SOCK_STREAM IPPROTO_TCP 127.0.0.1:2525 (16 bytes)"
    );
}

#[test]
fn getaddrinfo_numeric_host_parses_and_refuses_names() {
    let numeric = Hints {
        family: libc::AF_UNSPEC,
        socktype: libc::SOCK_STREAM,
        flags: libc::AI_NUMERICHOST,
    };
    let answers = netdb::getaddrinfo(Some("::1"), Some("2525"), numeric).expect("getaddrinfo ::1");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].socket_addr(), Some("[::1]:2525".parse().unwrap()));
    assert_eq!((answers[0].family, answers[0].addr_len), (libc::AF_INET6, 28));
    let refused = netdb::getaddrinfo(Some("localhost"), Some("2525"), numeric).expect_err("a name is not numeric");
    assert_eq!(refused.code, libc::EAI_NONAME);
    assert!(refused.to_string().starts_with("EAI_NONAME: "), "{refused}");
}

#[test]
fn sockaddr_in_is_16_bytes_and_sockaddr_in6_is_28() {
    assert_eq!(std::mem::size_of::<libc::sockaddr_in>(), 16);
    assert_eq!(std::mem::size_of::<libc::sockaddr_in6>(), 28);
    let (v4_listener, _) = listener_on(&v4([127, 0, 0, 1], 0), AddressFamily::Inet, None);
    assert_eq!(name_len(&v4_listener), 16, "the kernel's answer for an AF_INET socket");
    require_ipv6!();
    let (v6_listener, _) = listener_on(&v6(Ipv6Addr::LOCALHOST, 0), AddressFamily::Inet6, None);
    assert_eq!(name_len(&v6_listener), 28, "the kernel's answer for an AF_INET6 socket");
}

#[test]
fn the_port_is_stored_high_byte_first() {
    let address = v4([127, 0, 0, 1], 2525);
    let c: &libc::sockaddr_in = address.as_ref();
    assert_eq!(2525u16.to_be_bytes(), [0x09, 0xdd]);
    assert_eq!(c.sin_port.to_ne_bytes(), [0x09, 0xdd], "htons(2525) in memory");
    assert_eq!(c.sin_port, 2525u16.to_be(), "what htons returns");
    assert_eq!(c.sin_addr.s_addr.to_ne_bytes(), [127, 0, 0, 1]);
    assert_eq!(c.sin_family, libc::AF_INET as libc::sa_family_t, "host order");
    if cfg!(target_endian = "little") {
        assert_eq!(2525u16.to_ne_bytes(), [0xdd, 0x09], "this CPU keeps the low byte first");
    }
}

#[test]
fn a_port_without_htons_is_read_byte_swapped() {
    // 2525 stored as this CPU stores it: the kernel reads the two bytes high byte first.
    let mut c: libc::sockaddr_in = *v4([127, 0, 0, 1], 0).as_ref();
    c.sin_port = 2525;
    let swapped = u16::from_be_bytes(2525u16.to_ne_bytes());
    let sock = tcp(AddressFamily::Inet);
    // SAFETY: c is a complete sockaddr_in and the length passed is its size.
    let ret = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const c).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        let error = std::io::Error::last_os_error();
        assert_eq!(error.raw_os_error(), Some(libc::EADDRINUSE), "bind: {error}");
        eprintln!("skipped: port {swapped} is in use by someone else");
        return;
    }
    let bound = getsockname::<SockaddrIn>(sock.as_raw_fd()).expect("getsockname");
    assert_eq!(bound.port(), swapped);
    if cfg!(target_endian = "little") {
        assert_eq!(bound.port(), 56585, "0xdd09, not 0x09dd");
    }
}

#[test]
fn port_0_gets_a_real_port_that_is_then_taken() {
    let (listener, port) = listener_on(&v4([127, 0, 0, 1], 0), AddressFamily::Inet, None);
    assert_ne!(port, 0);
    let second = tcp(AddressFamily::Inet);
    assert_eq!(
        bind(second.as_raw_fd(), &v4([127, 0, 0, 1], port)),
        Err(Errno::EADDRINUSE),
        "the port getsockname named is the one the listener holds"
    );
    drop(listener);
}

#[test]
fn a_wildcard_listener_takes_127_0_0_2_and_names_the_dialled_address() {
    let (listener, port) = listener_on(&v4([0, 0, 0, 0], 0), AddressFamily::Inet, None);
    let wildcard = getsockname::<SockaddrIn>(listener.as_raw_fd()).expect("getsockname");
    assert_eq!(wildcard.ip(), Ipv4Addr::UNSPECIFIED, "the listener stays 0.0.0.0");
    for dialled in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let client = tcp(AddressFamily::Inet);
        connect(client.as_raw_fd(), &v4(dialled, port)).expect("connect");
        let conn = accept_one(&listener);
        let local = getsockname::<SockaddrIn>(conn.as_raw_fd()).expect("getsockname");
        assert_eq!(local.ip(), Ipv4Addr::from(dialled), "the connection's local address");
        assert_eq!(local.port(), port);
    }
}

#[test]
fn a_127_0_0_1_listener_refuses_127_0_0_2() {
    let (_listener, port) = listener_on(&v4([127, 0, 0, 1], 0), AddressFamily::Inet, None);
    let client = tcp(AddressFamily::Inet);
    assert_eq!(
        connect(client.as_raw_fd(), &v4([127, 0, 0, 2], port)),
        Err(Errno::ECONNREFUSED)
    );
    let client = tcp(AddressFamily::Inet);
    assert_eq!(connect(client.as_raw_fd(), &v4([127, 0, 0, 1], port)), Ok(()));
}

#[test]
fn getsockname_and_getpeername_agree_across_a_connection() {
    let (listener, port) = listener_on(&v4([127, 0, 0, 1], 0), AddressFamily::Inet, None);
    let client = tcp(AddressFamily::Inet);
    connect(client.as_raw_fd(), &v4([127, 0, 0, 1], port)).expect("connect");
    let conn = accept_one(&listener);
    let client_local = getsockname::<SockaddrIn>(client.as_raw_fd()).expect("getsockname");
    let client_peer = getpeername::<SockaddrIn>(client.as_raw_fd()).expect("getpeername");
    let server_local = getsockname::<SockaddrIn>(conn.as_raw_fd()).expect("getsockname");
    let server_peer = getpeername::<SockaddrIn>(conn.as_raw_fd()).expect("getpeername");
    assert_ne!(client_local.port(), 0, "connect gave the client a port");
    assert_eq!(client_local, server_peer);
    assert_eq!(client_peer, server_local);
    assert_eq!(
        getpeername::<SockaddrIn>(listener.as_raw_fd()),
        Err(Errno::ENOTCONN),
        "a listener has no peer"
    );
}

#[test]
fn v6only_off_takes_ipv4_clients_as_mapped_addresses() {
    require_ipv6!();
    let (listener, port) = listener_on(&v6(Ipv6Addr::UNSPECIFIED, 0), AddressFamily::Inet6, Some(false));
    let client = tcp(AddressFamily::Inet);
    connect(client.as_raw_fd(), &v4([127, 0, 0, 1], port)).expect("connect");
    let conn = accept_one(&listener);
    let peer = getpeername::<SockaddrStorage>(conn.as_raw_fd()).expect("getpeername");
    let peer = peer.as_sockaddr_in6().expect("the server sees an AF_INET6 address");
    assert_eq!(peer.ip(), "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(peer.ip().to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST));
    assert_eq!(name_len(&conn), 28);
    let seen_by_client = getpeername::<SockaddrStorage>(client.as_raw_fd()).expect("getpeername");
    assert!(
        seen_by_client.as_sockaddr_in().is_some(),
        "the client sees plain AF_INET"
    );
}

#[test]
fn the_v6only_default_is_the_bindv6only_sysctl() {
    require_ipv6!();
    let sysctl = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").expect("reading net.ipv6.bindv6only");
    let sock = tcp(AddressFamily::Inet6);
    let default = getsockopt(&sock, sockopt::Ipv6V6Only).expect("IPV6_V6ONLY");
    assert_eq!(default, sysctl.trim() == "1");
}

#[test]
fn v6only_on_refuses_ipv4_clients() {
    require_ipv6!();
    let (_listener, port) = listener_on(&v6(Ipv6Addr::UNSPECIFIED, 0), AddressFamily::Inet6, Some(true));
    let client = tcp(AddressFamily::Inet);
    assert_eq!(
        connect(client.as_raw_fd(), &v4([127, 0, 0, 1], port)),
        Err(Errno::ECONNREFUSED)
    );
    let client6 = tcp(AddressFamily::Inet6);
    assert_eq!(
        connect(client6.as_raw_fd(), &v6(Ipv6Addr::LOCALHOST, port)),
        Ok(()),
        "IPv6 still gets in"
    );
}

/// Runs `lesson-03 server --host HOST --port P`, connects from `client_family` to `dialled`, and
/// returns what the server said and the client's own address.
fn ask_server(host: &str, port: u16, client_family: AddressFamily, dialled: &dyn SockaddrLike) -> (String, SocketAddr) {
    let mut server = Command::new(util::lesson_program(3))
        .args(["server", "--host", host, "--port", &port.to_string()])
        .env("SOCKLAB_TRACE", "plain")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting lesson-03 server");
    let mut lines = BufReader::new(server.stdout.take().expect("its stdout")).lines();
    let ready = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .any(|line| line.contains("listening on"));
    // Keep draining its trace so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    let client = tcp(client_family);
    let connected = connect(client.as_raw_fd(), dialled);
    let local = getsockname::<SockaddrStorage>(client.as_raw_fd());
    let mut text = String::new();
    let read = std::fs::File::from(client).read_to_string(&mut text);
    let _ = server.kill();
    let _ = server.wait();
    assert!(ready, "lesson-03 server never said it was listening");
    connected.expect("connect");
    read.expect("reading the reply");
    let local = local.expect("getsockname");
    let local = local
        .as_sockaddr_in()
        .map(|a| SocketAddr::from((a.ip(), a.port())))
        .or_else(|| local.as_sockaddr_in6().map(|a| SocketAddr::from((a.ip(), a.port()))))
        .expect("an inet address");
    (text, local)
}

#[test]
fn server_mode_tells_a_client_both_addresses() {
    let port = util::free_port();
    let (text, client) = ask_server("0.0.0.0", port, AddressFamily::Inet, &v4([127, 0, 0, 2], port));
    assert_eq!(text, format!("you are {client}; you reached 127.0.0.2:{port}\n"));
}

#[test]
fn server_mode_on_ipv6_wildcard_sees_ipv4_clients_as_mapped() {
    require_ipv6!();
    let port = util::free_port();
    let (text, client) = ask_server("::", port, AddressFamily::Inet, &v4([127, 0, 0, 1], port));
    assert_eq!(
        text,
        format!(
            "you are [::ffff:127.0.0.1]:{}; you reached [::ffff:127.0.0.1]:{port}\n",
            client.port()
        )
    );
}

/// Each stage of `lesson-03`'s demo as the real `strace -f` saw it: the calls its thread made
/// between a stage's begin and end markers (the demo stages glibc's getaddrinfo, and nothing
/// else), one line per call, `<unfinished ...>` and `<... resumed>` joined.
fn lesson_03_stages_under_strace() -> Vec<Vec<String>> {
    util::require("strace");
    let log = std::env::temp_dir().join(format!("socklab-gai-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg(util::lesson_program(3))
        .env("SOCKLAB_TRACE", "json");
    let output = util::run_with_deadline(command, std::time::Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut pending = std::collections::HashMap::new();
    let mut stages: std::collections::HashMap<String, Vec<Vec<String>>> = std::collections::HashMap::new();
    let mut inside = std::collections::HashSet::new();
    for raw in text.lines() {
        let Some((tid, call)) = raw.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let call = if let Some(head) = call.strip_suffix(" <unfinished ...>") {
            pending.insert(tid.to_string(), head.to_string());
            continue;
        } else if let Some(resumed) = call.strip_prefix("<... ") {
            let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{tail}", pending.remove(tid).unwrap_or_default())
        } else {
            call.to_string()
        };
        if call.starts_with(r#"write(1, "\36stage-begin"#) {
            inside.insert(tid.to_string());
            stages.entry(tid.to_string()).or_default().push(Vec::new());
        } else if call.starts_with(r#"write(1, "\36stage-end"#) {
            inside.remove(tid);
        } else if inside.contains(tid) {
            if let Some(stage) = stages.get_mut(tid).and_then(|s| s.last_mut()) {
                stage.push(call);
            }
        }
    }
    let mut threads: Vec<_> = stages.into_values().collect();
    assert_eq!(threads.len(), 1, "one thread of the demo stages its calls: {threads:?}");
    threads.pop().unwrap_or_default()
}

/// The descriptors a stage's calls opened (openat, socket) and did not close.
fn left_open(stage: &[String]) -> Vec<String> {
    let mut open = Vec::new();
    for call in stage {
        let result = call.rsplit_once(" = ").map(|(_, r)| r.trim().to_string());
        if call.starts_with("openat(") || call.starts_with("socket(") {
            if let Some(fd) = result.filter(|r| r.parse::<u32>().is_ok()) {
                open.push(fd);
            }
        } else if let Some(fd) = call.strip_prefix("close(").and_then(|r| r.split(')').next()) {
            open.retain(|o| o != fd);
        }
    }
    open
}

/// Lesson 03's "What getaddrinfo does underneath", held to the real strace: for "localhost"
/// glibc reads `/etc/hosts` (with AF_INET, and again with AF_UNSPEC), after `/etc/nsswitch.conf`;
/// every descriptor it opens it closes before returning; and the numeric "::1" with
/// AI_NUMERICHOST makes no system call at all.
#[test]
fn getaddrinfo_reads_etc_hosts_for_localhost_and_makes_no_call_for_a_numeric_address() {
    let stages = lesson_03_stages_under_strace();
    assert_eq!(stages.len(), 3, "the demo's three lookups: {stages:#?}");
    let opened = |stage: &[String], path: &str| {
        stage
            .iter()
            .position(|c| c.starts_with(&format!("openat(AT_FDCWD, \"{path}\"")))
    };
    let first = &stages[0];
    let (nsswitch, hosts) = (opened(first, "/etc/nsswitch.conf"), opened(first, "/etc/hosts"));
    assert!(
        nsswitch.is_some() && hosts.is_some() && nsswitch < hosts,
        "localhost: nsswitch.conf, then /etc/hosts: {first:#?}"
    );
    assert!(opened(&stages[1], "/etc/hosts").is_some(), "{:#?}", stages[1]);
    for stage in &stages {
        assert!(left_open(stage).is_empty(), "descriptors left open: {stage:#?}");
    }
    assert!(stages[2].is_empty(), "::1 with AI_NUMERICHOST: {:#?}", stages[2]);
}

/// With several answers glibc sorts them (RFC 6724): for each it asks the kernel which source
/// address it would use, by connecting a UDP socket (which sends nothing) and reading
/// getsockname. Python's `getaddrinfo(None, 2525, 0, SOCK_STREAM, 0, AI_PASSIVE)` gets two
/// answers, `0.0.0.0` and `::`, and strace shows the probe.
#[test]
fn getaddrinfo_sorts_several_answers_with_a_udp_socket_it_connects() {
    require_ipv6!();
    util::require("strace");
    util::require("python3");
    let log = std::env::temp_dir().join(format!("socklab-gai-sort-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        // No -f: Python makes these calls in its one thread (and a launcher script's own
        // children, if `python3` is one, are not worth tracing).
        .args(["-qq", "-e", "trace=socket,connect,getsockname,close", "-o"])
        .arg(&log)
        .args(["python3", "-c"])
        .arg("import socket; print(len(socket.getaddrinfo(None, 2525, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)))");
    let output = util::run_with_deadline(command, std::time::Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2", "two answers");
    let calls: Vec<&str> = text.lines().map(str::trim).collect();
    let probe = calls
        .iter()
        .position(|c| c.starts_with("socket(AF_INET6, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP)"))
        .unwrap_or_else(|| panic!("no UDP probe socket: {calls:#?}"));
    let rest = &calls[probe..];
    let fd = rest[0].rsplit_once(" = ").map_or("", |(_, fd)| fd.trim());
    let wanted = [
        format!(
            r#"connect({fd}, {{sa_family=AF_INET6, sin6_port=htons(2525), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::", &sin6_addr)"#
        ),
        format!("getsockname({fd}, {{sa_family=AF_INET6"),
        format!(r#"connect({fd}, {{sa_family=AF_INET, sin_port=htons(2525), sin_addr=inet_addr("0.0.0.0")}}, 16) = 0"#),
        format!("getsockname({fd}, {{sa_family=AF_INET6"),
        format!("close({fd})"),
    ];
    let mut at = 0;
    for want in &wanted {
        at += rest[at..]
            .iter()
            .position(|c| c.starts_with(want.as_str()))
            .unwrap_or_else(|| panic!("no {want:?} after the probe socket: {rest:#?}"))
            + 1;
    }
}
