#!/usr/bin/env python3
"""Seed 000's addresses (listings 3 and 5) and seed 004's function table, run for real.

Not one seed program but the seed's lines put together, in the style of PyMOTW: a name
looked up, a port in network byte order, an address tuple handed to bind, and the tuple
that accept hands back; then the same for IPv6. One process plays both ends, as the lesson's
demo does.

What changed from the seed, and why:
- print is a function, and the seed's interpreter session (`>>> ...`) is a script;
- the seed looks up 'www.ibm.com', which needs the network; here 'localhost', which glibc
  answers from /etc/hosts (this project talks only to loopback);
- the seed's server binds ('', 2525), every interface; here 127.0.0.1 and port 0, so the
  kernel picks a free port and getsockname says which ('' is shown on a socket that is bound
  and closed without ever listening).

    python3 addresses.py
"""
import socket

# Listing 3: a name becomes an address. A C library call, not a system call: glibc reads
# /etc/nsswitch.conf and /etc/hosts (and asks DNS for names not there).
print("gethostbyname('localhost') =", socket.gethostbyname('localhost'))
for family, type_, proto, _, addr in socket.getaddrinfo('localhost', 2525, socket.AF_INET, socket.SOCK_STREAM):
    print("getaddrinfo('localhost', 2525) ->", family.name, type_.name, proto, addr)

# Seed 004's table: htons and inet_pton make no system call at all.
print("htons(2525) = %#06x (2525 = %#06x)" % (socket.htons(2525), 2525))
print("inet_pton(AF_INET, '127.0.0.1') =", socket.inet_pton(socket.AF_INET, '127.0.0.1'))

# The seed's '' is INADDR_ANY, 0.0.0.0. This socket is bound and closed, never listening, so
# nothing can reach it.
probe = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
probe.bind( ('', 0) )
print("bind(('', 0)) gave", probe.getsockname())
probe.close()

# Listing 5: the tuple becomes a struct sockaddr_in (16 bytes) for bind, and accept turns the
# peer's sockaddr_in back into a tuple.
sock = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
sock.bind( ('127.0.0.1', 0) )
sock.listen( 5 )
print("the kernel picked port", sock.getsockname()[1])
client = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
client.connect( sock.getsockname() )
newsock, (remhost, remport) = sock.accept()
print("accept: remhost =", repr(remhost), " remport =", remport)
print("server side: getsockname() =", newsock.getsockname(), " getpeername() =", newsock.getpeername())
print("client side: getsockname() =", client.getsockname(), " getpeername() =", client.getpeername())
for s in (newsock, client, sock):
    s.close()

# The same on IPv6: a 4-tuple (host, port, flowinfo, scope_id), a sockaddr_in6 of 28 bytes.
sock6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
sock6.bind(('::1', 0))
sock6.listen(5)
client6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
client6.connect(sock6.getsockname())
conn6, peer6 = sock6.accept()
print("IPv6 accept:", peer6)
for s in (conn6, client6, sock6):
    s.close()
