#!/usr/bin/env python3
"""Seed 000's listing 13 and seed 003's server set-up, run for real; then settimeout.

Not one seed program but the seeds' option lines put together, in the style of PyMOTW:
- listing 13 (seed 000): read SO_SNDBUF and SO_REUSEADDR, then turn SO_REUSEADDR on;
- seed 003's chat server: setblocking(False), settimeout(2), SO_KEEPALIVE, SO_REUSEADDR;
- seed 003's chat client: settimeout(1) before connect, and a recv that times out;
- then the kernel's own receive timeout, SO_RCVTIMEO, set by hand, for comparison.

What Python's settimeout really asks the kernel: not SO_RCVTIMEO. It makes the socket
non-blocking (ioctl FIONBIO) and calls poll() with the time left before each operation;
when poll times out, Python raises TimeoutError (socket.timeout) itself, and the recv is
never made. What changed from the seeds: print is a function; the seeds' listener binds its
own port, this one binds 127.0.0.1 and port 0 (the kernel picks) and never accepts, so the
client's recv has nothing to read; 0.2 s instead of 1 s keeps the run short.

    python3 options.py
"""
import socket
import struct

# Listing 13
sock = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
bufsize = sock.getsockopt( socket.SOL_SOCKET, socket.SO_SNDBUF )
state = sock.getsockopt( socket.SOL_SOCKET, socket.SO_REUSEADDR )
sock.setsockopt( socket.SOL_SOCKET, socket.SO_REUSEADDR, 1 )
print("SO_SNDBUF =", bufsize, " SO_REUSEADDR was", state, "and is now",
      sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))

# Seed 003's server set-up, in its order
server = sock
server.setblocking(False)
server.settimeout(2)
server.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', 0))
server.listen(10)
print("after setblocking(False) then settimeout(2), gettimeout() =", server.gettimeout())

# Seed 003's client: a timeout before connect, then a recv nobody answers
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.settimeout(0.2)
client.connect(server.getsockname())
try:
    client.recv(1024)
except socket.timeout as error:
    print("recv gave up:", type(error).__name__, error)
client.close()

# The kernel's own receive timeout, for comparison: SO_RCVTIMEO set by hand on a blocking
# socket. The kernel's recvfrom waits 0.2 s and fails with EAGAIN, which Python reports as
# BlockingIOError: not the TimeoutError of settimeout.
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack('ll', 0, 200000))
client.connect(server.getsockname())
try:
    client.recv(1024)
except BlockingIOError as error:
    print("with SO_RCVTIMEO, recv gave up:", type(error).__name__, error)
client.close()
server.close()
