#!/usr/bin/env python3
# -*- coding:utf8 -*-
"""server.py: seed 003's TCP server (its section 二.3), ported to Python 3 with its logic unchanged.

What changed in the port, and why:
- print is a function;
- sendall takes bytes: b"server receive your messages, good bye.";
- the address: the seed binds ('10.1.32.80', 33333), a machine on the author's network; here
  127.0.0.1 (this project talks only to loopback) and the port from the command line
  (default 33333, the seed's).

It answers each client's first message with "good bye" and hangs up, for ever: stop it with
Ctrl-C. Stopped while a client is still connected, it takes that connection down with it:
the kernel closes its sockets and sends the client a FIN, which is where seed 003's client
meets its broken pipe (`make python-6`).

    python3 seed_server.py [PORT]
"""
import socket
import sys

host = ('127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 33333)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # network, TCP stream
s.bind(host)
s.listen(5)  # listen 5 client
print("i'm waiting for connection...")
while True:
    conn, addr = s.accept()   # connection  and ip address
    print('connected by', addr)
    while True:
        data = conn.recv(1024)
        print("receive from %s:%s" % (addr, data))
        conn.sendall(b"server receive your messages, good bye.")
        conn.close()
        break
# s.close()
