#!/usr/bin/env python3
"""Seed 000, listing 9: a simple Python stream echo server, ported to Python 3.

What changed in the port, and why:
- the address: the seed binds ('', 23000), every interface; here 127.0.0.1 (this project
  talks only to loopback) and the port from the command line (default 23000, the seed's);
- nothing else: recv returns bytes in Python 3 and send takes bytes, so `str` (the seed's
  name, which hides Python's str type) simply holds bytes now.

Like the seed it serves one client at a time, for ever: stop it with Ctrl-C.

    python3 seed_server.py [PORT]
"""
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 23000

srvsock = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
srvsock.bind( ('127.0.0.1', port) )
srvsock.listen( 5 )

while 1:

  clisock, (remhost, remport) = srvsock.accept()
  str = clisock.recv(100)
  clisock.send( str )
  clisock.close()
