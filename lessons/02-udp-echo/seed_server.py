#!/usr/bin/env python3
"""Seed 000, listing 11: a simple Python datagram echo server, ported to Python 3.

What changed in the port, and why:
- the address: the seed binds ('', 23000), every interface; here 127.0.0.1 (this project
  talks only to loopback) and the port from the command line (default 23000, the seed's);
- nothing else: recvfrom returns bytes in Python 3, and sendto sends them back unchanged.

Like the seed it answers for ever: stop it with Ctrl-C.

    python3 seed_server.py [PORT]
"""
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 23000

dgramSock = socket.socket( socket.AF_INET, socket.SOCK_DGRAM )
dgramSock.bind( ('127.0.0.1', port) )

while 1:

  msg, (addr, port) = dgramSock.recvfrom( 100 )
  dgramSock.sendto( msg, (addr, port) )
