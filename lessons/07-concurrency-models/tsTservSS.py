#!/usr/bin/env python3
# coding: utf-8
"""Seed 004's tsTservSS.py: a SocketServer TCP server, as published, with one switch added.

What changed, and why:
- the handler writes bytes: `self.wfile.write(bytes('[%s] %s' % ...), 'utf-8'))`; the seed's
  `wfile.write(str)` raises TypeError in Python 3 (its sample output, b"[...] b'a\\r\\n'",
  shows that it formatted the bytes readline() returned, as this does);
- the address: the seed binds ('', 21567), every interface; here 127.0.0.1 (this project
  talks only to loopback) and the port from the command line (default 21567, the seed's);
- one switch, so that the seed's table of server classes can be run: a second argument
  `forking` or `threading` serves with ForkingTCPServer or ThreadingTCPServer instead of
  the seed's TCPServer. The handler is the same for all three.

What socketserver does underneath, per request (strace shows it): serve_forever() waits in
poll() on the listener with a 0.5 s timeout, over and over (that is how it notices
shutdown()); after handle() returns, shutdown_request() calls shutdown(SHUT_WR) and close().
ForkingTCPServer forks a child per request, closes its copy of the connection in the
parent, and reaps finished children between polls with waitpid(pid, WNOHANG).

    python3 tsTservSS.py [PORT [tcp|forking|threading]]
"""
import sys
from socketserver import (TCPServer as TCP, StreamRequestHandler as SRH,
                          ForkingTCPServer, ThreadingTCPServer)

from time import ctime

HOST = '127.0.0.1'
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 21567
ADDR = (HOST, PORT)
TCP = {'tcp': TCP, 'forking': ForkingTCPServer, 'threading': ThreadingTCPServer}[
    sys.argv[2] if len(sys.argv) > 2 else 'tcp']


class MyRequestHandler(SRH):
    def handle(self):
        print('...connected from:', self.client_address)
        self.wfile.write(bytes('[%s] %s' % (ctime(), self.rfile.readline()), 'utf-8'))

tcpServ = TCP(ADDR, MyRequestHandler)
print('waiting for connection...')
tcpServ.serve_forever()
