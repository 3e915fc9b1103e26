#!/usr/bin/env python3
"""Seed 000, listing 12: a simple Python datagram echo client, ported to Python 3.

What changed in the port, and why:
- print is a function: print(...) for the seed's `print ...`;
- the message is bytes (b"Hello World\n"): a Python 3 socket sends bytes, not str;
- the address: the seed sends to ('', 23000); here host and port come from the command line
  (default 127.0.0.1 23000).

Like the seed, it waits for the echo with no timeout: if the datagram or its echo is lost,
recv never returns (the lesson's pitfall; see early_client.py for a timeout).

    python3 seed_client.py [HOST [PORT]]
"""
import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 23000

dgramSock = socket.socket( socket.AF_INET, socket.SOCK_DGRAM )

dgramSock.sendto( b"Hello World\n", (host, port) )
print(dgramSock.recv( 100 ))
dgramSock.close()
