#!/usr/bin/env python3
"""Seed 001: the minimal client, ported to Python 3.

What changed in the port, and why:
- print is a function; what recv returns is bytes, printed as b'...';
- the address: the seed connects to (socket.gethostname(), 1234); here host and port come
  from the command line (default 127.0.0.1 1234).

    python3 seed_client.py [HOST [PORT]]
"""
import socket
import sys

s = socket.socket()

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'

port = int(sys.argv[2]) if len(sys.argv) > 2 else 1234

s.connect((host, port))

print(s.recv(1024))
