#!/usr/bin/env python3
# -*- coding:utf8 -*-
"""client.py: seed 003's TCP client (its section 二.3), ported to Python 3 with its logic unchanged.

What changed in the port, and why:
- print is a function, raw_input is input;
- the socket carries bytes: a typed line is encoded before sendall, and what recv returns is
  decoded before it is printed and searched for "good bye";
- the address: the seed connects to ('10.1.32.80', 33333); here host and port come from the
  command line (default 127.0.0.1 33333).

The seed guards its sendall with `except socket.error` (OSError in Python 3) and prints
"i'm die, bye bye~": that catches a broken pipe (EPIPE) and a reset (ECONNRESET) alike.
Its recv is not guarded, and an empty recv (the server's FIN) is printed as an empty line and
the loop goes on.

    python3 seed_client.py [HOST [PORT]]
"""
import socket
import sys

host = (sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1', int(sys.argv[2]) if len(sys.argv) > 2 else 33333)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # network, TCP stream
s.connect(host)
while True:
    msg = input("Please input message: ")
    try:
        s.sendall(msg.encode())
    except socket.error:
        print("i'm die, bye bye~")
        break
    data = s.recv(1024).decode()
    print(data)
    if "good bye" in data:
        break
s.close()
