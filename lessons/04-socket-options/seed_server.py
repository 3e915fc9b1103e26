#!/usr/bin/env python3
"""Seed 001: the minimal server, ported to Python 3.

What changed in the port, and why:
- print is a function, and `while true` (the article's lower-casing) is `while True`;
- c.send takes bytes: b'thank you for connecting';
- the address: the seed binds (socket.gethostname(), 1234), whatever address the machine's
  name resolves to; here 127.0.0.1 (this project talks only to loopback) and the port from
  the command line (default 1234, the seed's).

The seed's note: "if you stop the server with Ctrl-C, using the same port again may need a
while". It sets no SO_REUSEADDR, and it closes each connection first, so each one leaves a
TIME_WAIT behind on the server's side: start it again at once and bind fails with
EADDRINUSE (`make python-4` shows it).

    python3 seed_server.py [PORT]
"""
import socket
import sys

s = socket.socket()

host = '127.0.0.1'

port = int(sys.argv[1]) if len(sys.argv) > 1 else 1234

s.bind((host, port))

s.listen(5)

while True:

    c, addr = s.accept()

    print('got connection from', addr)

    c.send(b'thank you for connecting')

    c.close()
