//! Lesson 03: addresses. What a name like "localhost" turns into, what the kernel is handed
//! (a `sockaddr_in` of 16 bytes, a `sockaddr_in6` of 28, the port in network byte order), and
//! what `getsockname` and `getpeername` say on each end of a connection.
//!
//! The demo looks up "localhost" with getaddrinfo, lays a sockaddr_in out byte by byte, then
//! plays both ends of a few connections on 127.0.0.1, 127.0.0.2 and ::1: a wildcard listener
//! next to a loopback-only one, port 0 and the port the kernel picked, and an IPv6 listener
//! with IPV6_V6ONLY off (an IPv4 client shows up as ::ffff:127.0.0.1) and on (refused).
//!
//!   make lesson-3                                        the demo
//!   make lesson-3 ARGS="server --host 0.0.0.0"           tells each client who it is: nc 127.0.0.2 2525
//!   make lesson-3 ARGS="server --host ::"                IPv6 and IPv4 on one socket: nc -4 127.0.0.1 2525
//!   make lesson-3 ARGS="client localhost --port 2525"    getaddrinfo, then each answer in turn
//!
//! One thread plays both ends, switching names in the trace: a client's connect returns once
//! the kernel has done the handshake, so the server's accept that follows does not block.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrStorage, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::netdb::{self, Hints};
use socklab::sys::{self, Errno};
use socklab::trace;

/// Seed 000's listing 5 binds ('', 2525); the demo asks for port 0 instead.
const DEFAULT_PORT: u16 = 2525;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            serve(args.addr())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            // A name to look up (`localhost`, `::1`, `ip6-localhost`), or the --host address.
            let name = args.rest.first().cloned().unwrap_or_else(|| args.host.to_string());
            connect_by_name(&name, args.port)
        }
    }
}

fn demo() -> Outcome {
    trace::set_actor("main");
    let localhost = names()?;
    byte_order();
    wildcard_and_loopback(localhost)?;
    ipv6()?;
    Ok(())
}

/// getaddrinfo: a library function that turns a name into socket addresses.
fn names() -> Result<Ipv4Addr, String> {
    let service = DEFAULT_PORT.to_string();
    trace::say(
        "getaddrinfo() is a C library function, not a system call: for \"localhost\" glibc reads \
         /etc/hosts (strace -f shows the openat and read); other names may go to DNS",
    );
    let ipv4_stream = Hints {
        family: libc::AF_INET,
        socktype: libc::SOCK_STREAM,
        flags: 0,
    };
    let answers =
        netdb::getaddrinfo(Some("localhost"), Some(&service), ipv4_stream).context("getaddrinfo localhost")?;
    trace::say(format!(
        "getaddrinfo(\"localhost\", \"{service}\", {{AF_INET, SOCK_STREAM}}) gave {} answer(s):",
        answers.len()
    ));
    for answer in &answers {
        trace::say(format!("  {}", answer.describe()));
    }
    let localhost = answers
        .iter()
        .find_map(|a| match a.socket_addr() {
            Some(SocketAddr::V4(v4)) => Some(*v4.ip()),
            _ => None,
        })
        .ok_or("getaddrinfo gave no IPv4 address for localhost")?;

    // Both families: what this machine's /etc/hosts says, which differs from machine to machine.
    let any_stream = Hints {
        family: libc::AF_UNSPEC,
        socktype: libc::SOCK_STREAM,
        flags: 0,
    };
    let both = netdb::getaddrinfo(Some("localhost"), Some(&service), any_stream).context("getaddrinfo localhost")?;
    let v6 = both.iter().filter(|a| a.family == libc::AF_INET6).count();
    trace::measured(format!(
        "with AF_UNSPEC: {} answer(s) on this machine, {v6} of them IPv6 (/etc/hosts decides)",
        both.len()
    ));

    let numeric = Hints {
        family: libc::AF_UNSPEC,
        socktype: libc::SOCK_STREAM,
        flags: libc::AI_NUMERICHOST,
    };
    let loopback6 = netdb::getaddrinfo(Some("::1"), Some(&service), numeric).context("getaddrinfo ::1")?;
    trace::say(format!(
        "getaddrinfo(\"::1\", \"{service}\", {{AI_NUMERICHOST}}) reads no file, it only parses:"
    ));
    for answer in &loopback6 {
        trace::say(format!("  {}", answer.describe()));
    }
    Ok(localhost)
}

/// htons and the bytes of a sockaddr_in, as the kernel reads them.
fn byte_order() {
    let port = DEFAULT_PORT;
    let [first, second] = port.to_ne_bytes();
    let endian = if cfg!(target_endian = "little") {
        "little-endian: low byte first"
    } else {
        "big-endian: high byte first"
    };
    trace::say(format!(
        "the seed's port, {port} = {port:#06x}; this CPU stores a u16 as {first:02x} {second:02x} ({endian})"
    ));
    let [high, low] = port.to_be_bytes();
    trace::say(format!(
        "htons({port}) makes memory hold {high:02x} {low:02x}: network byte order, high byte first"
    ));
    // nix builds the C struct; its fields are read back as the bytes the kernel sees.
    let address = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let c: &libc::sockaddr_in = address.as_ref();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    trace::say(format!(
        "sockaddr_in for 127.0.0.1:{port}, 16 bytes: {} | {} | {} | {}",
        hex(&c.sin_family.to_ne_bytes()),
        hex(&c.sin_port.to_ne_bytes()),
        hex(&c.sin_addr.s_addr.to_ne_bytes()),
        hex(&c.sin_zero)
    ));
    trace::say("  sin_family (AF_INET=2, host order) | sin_port (htons) | sin_addr (network order) | zero padding");
    trace::say("a sockaddr_in6 is 28 bytes: 2 for the family, 2 for the port, 4 flowinfo, 16 address, 4 scope id");
}

/// socket, bind, listen.
fn listen_on(addr: SocketAddr, v6only: Option<bool>, bind_note: &str) -> Result<OwnedFd, String> {
    let listener = tcp_socket(addr.ip())?;
    if let Some(only) = v6only {
        trace::explain(if only {
            "on: this socket takes IPv6 clients only"
        } else {
            "off: this IPv6 socket takes IPv4 clients too; the default comes from net.ipv6.bindv6only, so say it"
        });
        sys::setsockopt(&listener, sockopt::Ipv6V6Only, &only).context("setsockopt IPV6_V6ONLY")?;
    }
    trace::explain(bind_note);
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// getsockname: the port the socket is bound to (the one the kernel picked, after port 0).
fn bound_port(sock: &OwnedFd) -> Result<u16, String> {
    Ok(port_of(&sys::getsockname(sock).context("getsockname")?))
}

fn tcp_socket(ip: IpAddr) -> Result<OwnedFd, String> {
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")
}

fn port_of(addr: &SockaddrStorage) -> u16 {
    if let Some(v4) = addr.as_sockaddr_in() {
        v4.port()
    } else {
        addr.as_sockaddr_in6().map_or(0, |v6| v6.port())
    }
}

/// A wildcard listener takes connections to any local address; a 127.0.0.1 one only to that.
fn wildcard_and_loopback(localhost: Ipv4Addr) -> Result<(), String> {
    trace::set_actor("server");
    let listener = listen_on(
        "0.0.0.0:0".parse().expect("a literal address"),
        None,
        "0.0.0.0 (INADDR_ANY, Python's '') is every local address; port 0 lets the kernel choose",
    )?;
    trace::explain("which port did port 0 get? The address stays what bind said");
    let port = bound_port(&listener)?;

    trace::set_actor("client");
    let target = SocketAddr::from((localhost, port));
    trace::explain("the client's socket: 4, because this one process plays both ends");
    let client = tcp_socket(target.ip())?;
    trace::explain("to the address getaddrinfo gave for localhost, and the port the server got");
    sys::connect(&client, target).context(format!("connect {target}"))?;
    trace::explain("connect bound the client too: the kernel picked an ephemeral port");
    let client_local = sys::getsockname(&client).context("getsockname")?;
    trace::explain("who the client is talking to");
    sys::getpeername(&client).context("getpeername")?;

    trace::set_actor("server");
    trace::explain("returns at once: the handshake was done during connect; the peer is the client's getsockname");
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::explain("the listener is bound to 0.0.0.0, but a connection has one real local address");
    sys::getsockname(&conn).context("getsockname")?;
    trace::explain("the same address accept4 reported");
    let server_peer = sys::getpeername(&conn).context("getpeername")?;
    if server_peer != client_local {
        return Err(format!("the ends disagree: {client_local} and {server_peer}"));
    }
    trace::say(format!(
        "the client's getsockname and the server's getpeername agree: {server_peer}"
    ));
    sys::close(conn).context("close")?;
    trace::set_actor("client");
    sys::close(client).context("close")?;

    let other_loopback = SocketAddr::from(([127, 0, 0, 2], port));
    trace::explain("another socket, to 127.0.0.2: all of 127.0.0.0/8 is this machine's loopback");
    let client = tcp_socket(other_loopback.ip())?;
    sys::connect(&client, other_loopback).context(format!("connect {other_loopback}"))?;
    trace::set_actor("server");
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::explain("this time the local address is 127.0.0.2: whatever the client dialled");
    sys::getsockname(&conn).context("getsockname")?;
    sys::close(conn).context("close")?;
    trace::set_actor("client");
    sys::close(client).context("close")?;
    trace::set_actor("server");
    sys::close(listener).context("close")?;

    let listener = listen_on(
        SocketAddr::from((localhost, 0)),
        None,
        "127.0.0.1 only this time: connections to any other address will not reach this socket",
    )?;
    let port = bound_port(&listener)?;
    trace::set_actor("client");
    let other_loopback = SocketAddr::from(([127, 0, 0, 2], port));
    let client = tcp_socket(other_loopback.ip())?;
    trace::explain("127.0.0.2 is this machine too, but nothing listens on 127.0.0.2 at this port: RST");
    match sys::connect(&client, other_loopback) {
        Err(Errno::ECONNREFUSED) => trace::say("refused: the listener on 127.0.0.1 does not take it"),
        other => {
            return Err(format!(
                "connect {other_loopback}: expected ECONNREFUSED, got {other:?}"
            ));
        }
    }
    sys::close(client).context("close")?;
    trace::set_actor("server");
    sys::close(listener).context("close")?;
    Ok(())
}

/// ::1 and 28-byte addresses; one IPv6 socket serving IPv4 too, unless IPV6_V6ONLY is on.
fn ipv6() -> Result<(), String> {
    trace::set_actor("server");
    // The check comes first: a machine may run without IPv6, or without ::1 on its loopback.
    trace::explain("an IPv6 endpoint, if this machine has IPv6 at all");
    let probe = match tcp_socket(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)) {
        Ok(probe) => probe,
        Err(error) => {
            trace::say(format!("no IPv6 here ({error}): skipping the IPv6 part"));
            return Ok(());
        }
    };
    let loopback6: SocketAddr = "[::1]:0".parse().expect("a literal address");
    trace::explain("::1 is IPv6's loopback; a sockaddr_in6 is 28 bytes where a sockaddr_in is 16");
    if let Err(errno) = sys::bind(&probe, loopback6) {
        trace::say(format!("::1 is not available here ({errno}): skipping the IPv6 part"));
        sys::close(probe).context("close")?;
        return Ok(());
    }
    sys::listen(&probe, BACKLOG).context("listen")?;
    let port = bound_port(&probe)?;
    trace::set_actor("client");
    let target = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let client = tcp_socket(target.ip())?;
    sys::connect(&client, target).context(format!("connect {target}"))?;
    trace::set_actor("server");
    trace::explain("the peer's address fills 28 of the 128 bytes this time");
    let (conn, peer) = sys::accept4(&probe, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("an IPv6 client: {peer}"));
    sys::close(conn).context("close")?;
    trace::set_actor("client");
    sys::close(client).context("close")?;
    trace::set_actor("server");
    sys::close(probe).context("close")?;

    let wildcard6: SocketAddr = "[::]:0".parse().expect("a literal address");
    let listener = listen_on(wildcard6, Some(false), ":: is IPv6's wildcard, every local address")?;
    let port = bound_port(&listener)?;
    trace::set_actor("client");
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    trace::explain("a plain IPv4 client");
    let client = tcp_socket(target.ip())?;
    sys::connect(&client, target).context(format!("connect {target}"))?;
    trace::explain("to the client, the server is plain IPv4: 16 bytes");
    sys::getpeername(&client).context("getpeername")?;
    trace::set_actor("server");
    trace::explain("to the server, the client is an IPv4-mapped IPv6 address, ::ffff:127.0.0.1, in 28 bytes");
    let (conn, peer) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("an IPv4 client on an IPv6 socket: {peer}"));
    sys::close(conn).context("close")?;
    trace::set_actor("client");
    sys::close(client).context("close")?;
    trace::set_actor("server");
    sys::close(listener).context("close")?;

    let listener = listen_on(wildcard6, Some(true), ":: again, but for IPv6 alone")?;
    let port = bound_port(&listener)?;
    trace::set_actor("client");
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let client = tcp_socket(target.ip())?;
    trace::explain("the same IPv4 client, refused: with V6ONLY nothing listens for IPv4 on this port");
    match sys::connect(&client, target) {
        Err(Errno::ECONNREFUSED) => trace::say("refused: IPV6_V6ONLY keeps IPv4 out"),
        other => return Err(format!("connect {target}: expected ECONNREFUSED, got {other:?}")),
    }
    sys::close(client).context("close")?;
    trace::set_actor("server");
    sys::close(listener).context("close")?;
    Ok(())
}

/// `server` mode: listen on --host/--port and tell each client both ends' addresses.
fn serve(addr: SocketAddr) -> Outcome {
    // On an IPv6 wildcard, take IPv4 clients too, whatever this system's default is.
    let v6only = addr.is_ipv6().then_some(false);
    let listener = listen_on(addr, v6only, "the address and port this server answers on")?;
    let port = bound_port(&listener)?;
    let shown = SocketAddr::new(addr.ip(), port);
    trace::say(format!("listening on {shown}; try: nc {} {port}", addr.ip()));
    loop {
        // One client's trouble ends that conversation, not the server.
        if let Err(error) = tell_one(&listener) {
            trace::say(format!("that connection failed: {error}; waiting for the next"));
        }
    }
}

/// accept one client, send it "you are X, you reached Y", close.
fn tell_one(listener: &OwnedFd) -> Result<(), String> {
    let (conn, _) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    let local = sys::getsockname(&conn).context("getsockname")?;
    let peer = sys::getpeername(&conn).context("getpeername")?;
    let line = format!("you are {peer}; you reached {local}\n");
    sys::send_all(&conn, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    sys::close(conn).context("close")?;
    Ok(())
}

/// `client` mode: getaddrinfo, then socket and connect for each answer until one connects,
/// as Python's `socket.create_connection` does.
fn connect_by_name(name: &str, port: u16) -> Outcome {
    let hints = Hints {
        family: libc::AF_UNSPEC,
        socktype: libc::SOCK_STREAM,
        flags: 0,
    };
    let answers =
        netdb::getaddrinfo(Some(name), Some(&port.to_string()), hints).context(format!("getaddrinfo {name}"))?;
    trace::say(format!(
        "getaddrinfo(\"{name}\", \"{port}\", {{AF_UNSPEC, SOCK_STREAM}}) gave {} answer(s), tried in this order:",
        answers.len()
    ));
    for answer in &answers {
        trace::say(format!("  {}", answer.describe()));
    }
    let mut last_error = format!("no address for {name}");
    for target in answers.iter().filter_map(|a| a.socket_addr()) {
        let sock = tcp_socket(target.ip())?;
        match sys::connect(&sock, target) {
            Ok(()) => {
                trace::explain("who we are: compare with what the server says");
                sys::getsockname(&sock).context("getsockname")?;
                sys::getpeername(&sock).context("getpeername")?;
                hear_server(&sock)?;
                sys::close(sock).context("close")?;
                return Ok(());
            }
            Err(errno) => {
                last_error = format!("connect {target}: {errno}");
                sys::close(sock).context("close")?;
            }
        }
    }
    Err(last_error.into())
}

/// Prints what the server sends first (this lesson's server says who we are), waiting at most
/// a couple of seconds: another server may say nothing at all.
fn hear_server(sock: &OwnedFd) -> Result<(), String> {
    trace::explain("some servers never speak first: wait 2 s at most");
    sys::setsockopt(sock, sockopt::ReceiveTimeout, &TimeVal::milliseconds(2000)).context("setsockopt")?;
    let mut buf = [0u8; 200];
    match sys::recv(sock, &mut buf, MsgFlags::empty()) {
        Ok(n) => trace::say(format!("the server says: {:?}", String::from_utf8_lossy(&buf[..n]))),
        Err(Errno::EAGAIN) => trace::say("the server said nothing within 2 s"),
        Err(errno) => return Err(format!("recv: {errno}")),
    }
    Ok(())
}
