//! An idiomatic mio 1.x echo server, in the shape of mio's own `tcp_server` example: one
//! `Poll`, a `HashMap` of connections by `Token`, read until `WouldBlock`, write until
//! `WouldBlock`, and `reregister` for `WRITABLE` only while a write would block.
//!
//!     mio-echo [PORT]
//!
//! Listens on 127.0.0.1:PORT (0, the default, lets the kernel choose), says where on stderr,
//! and echoes until killed. mio's registrations are edge-triggered (EPOLLET): every handler
//! goes on until the kernel says `WouldBlock`. A connection whose echo cannot be written is not
//! read from until it is (at most one 64 KiB buffer of it is held), so TCP slows the client.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

const SERVER: Token = Token(0);
const BUF_SIZE: usize = 64 * 1024;

/// One client and the part of its bytes not yet written back: `buf[start..end]`.
struct Connection {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Registered for WRITABLE (instead of READABLE): a write would block.
    waiting_to_write: bool,
}

fn main() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port
            .parse()
            .map_err(|_| io::Error::other(format!("{port:?} is not a port")))?,
        None => 0,
    };
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(128);
    let mut server = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    poll.registry().register(&mut server, SERVER, Interest::READABLE)?;
    eprintln!("mio-echo: listens on {}", server.local_addr()?);

    let mut connections: HashMap<Token, Connection> = HashMap::new();
    let mut next_token = 1;
    loop {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            match event.token() {
                SERVER => loop {
                    let mut stream = match server.accept() {
                        Ok((stream, _)) => stream,
                        Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                        Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                        Err(err) => {
                            eprintln!("mio-echo: accept: {err}");
                            break;
                        }
                    };
                    let token = Token(next_token);
                    next_token += 1;
                    poll.registry().register(&mut stream, token, Interest::READABLE)?;
                    let connection = Connection {
                        stream,
                        buf: vec![0; BUF_SIZE].into_boxed_slice(),
                        start: 0,
                        end: 0,
                        waiting_to_write: false,
                    };
                    connections.insert(token, connection);
                },
                token => {
                    let done = match connections.get_mut(&token) {
                        Some(connection) => connection.echo(poll.registry(), token)?,
                        None => false, // sporadic events happen
                    };
                    if done && let Some(mut connection) = connections.remove(&token) {
                        poll.registry().deregister(&mut connection.stream)?;
                    }
                }
            }
        }
    }
}

impl Connection {
    /// Writes what is held, then reads and writes back until either would block. Returns true
    /// when the connection is finished (end-of-file or an error).
    fn echo(&mut self, registry: &Registry, token: Token) -> io::Result<bool> {
        loop {
            while self.start < self.end {
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {
                        if !self.waiting_to_write {
                            self.waiting_to_write = true;
                            registry.reregister(&mut self.stream, token, Interest::WRITABLE)?;
                        }
                        return Ok(false);
                    }
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Ok(true),
                }
            }
            if self.waiting_to_write {
                self.waiting_to_write = false;
                registry.reregister(&mut self.stream, token, Interest::READABLE)?;
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(true),
                Ok(n) => (self.start, self.end) = (0, n),
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Ok(true),
            }
        }
    }
}
