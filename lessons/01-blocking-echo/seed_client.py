#!/usr/bin/env python3
"""Seed 000, listing 10: the client for listing 9's echo server, ported to Python 3.

What changed in the port, and why:
- print is a function: print(...) for the seed's `print ...`;
- the message is bytes (b"Hello World\n"): a Python 3 socket sends bytes, not str, and
  prints what comes back as bytes too (b'Hello World\n');
- the address: the seed connects to ('', 23000), which Python takes as the local host; here
  host and port come from the command line (default 127.0.0.1 23000).

    python3 seed_client.py [HOST [PORT]]
"""
import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 23000

clisock = socket.socket( socket.AF_INET, socket.SOCK_STREAM )

clisock.connect( (host, port) )

clisock.send(b"Hello World\n")
print(clisock.recv(100))

clisock.close()
