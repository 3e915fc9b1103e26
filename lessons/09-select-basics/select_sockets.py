#!/usr/bin/env python3
"""Seed 000, listing 15: one select over two client sockets, ported to Python 3.

What changed in the port, and why:
- print is a function; what recv returns is bytes, printed as b'...';
- the address: the seed connects both sockets to ('192.168.1.1', 25), an SMTP server on the
  author's network; here host and port come from the command line (default 127.0.0.1 2525),
  and `make python-9` points it at greeter.py, which speaks on the second connection only.

Like the seed it loops for ever, printing "Five seconds elapsed." after every 5 s of silence:
stop it with Ctrl-C. When a server closes a connection, that socket is readable for ever and
recv returns b'' every time: the seed's loop then spins, printing b''.

    python3 select_sockets.py [HOST [PORT]]
"""
import socket
import select
import sys

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 2525

sock1 = socket.socket( socket.AF_INET, socket.SOCK_STREAM )
sock2 = socket.socket( socket.AF_INET, socket.SOCK_STREAM )

sock1.connect( (host, port) )
sock2.connect( (host, port) )

while 1:

  # Await a read event
  rlist, wlist, elist = select.select( [sock1, sock2], [], [], 5 )

  # Test for timeout
  if [rlist, wlist, elist] == [ [], [], [] ]:

    print("Five seconds elapsed.\n")

  else:

    # Loop through each socket in rlist, read and print the available data
    for sock in rlist:

      print(sock.recv( 100 ))
