#!/usr/bin/env python3
# coding: utf-8
"""Seed 004's tsTclntSS.py: the client for tsTservSS.py, as published.

The seed is already Python 3. What changed, and why:
- the address: host and port come from the command line (default 'localhost' 21567, the
  seed's; the demo passes 127.0.0.1).

It makes a new connection for every line, because the server answers one line per
connection and hangs up; an empty line ends it (at the end of input Python's input() raises
EOFError instead, so end with an empty line).

    python3 tsTclntSS.py [HOST [PORT]]
"""

from socket import *
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 21567
BUFSIZ = 1024
ADDR = (HOST, PORT)

while True:
    tcpCliSock = socket(AF_INET, SOCK_STREAM)
    tcpCliSock.connect(ADDR)
    data = input('> ')
    if not data:
        break
    tcpCliSock.send(bytes('%s\r\n' % data, 'utf-8'))
    data = tcpCliSock.recv(BUFSIZ)
    if not data:
        break
    print(data.strip())
    tcpCliSock.close()
