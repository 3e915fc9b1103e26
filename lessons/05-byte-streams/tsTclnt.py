#!/usr/bin/env python3
# coding: utf-8
"""Seed 004's tsTclnt.py: the client for tsTserv.py, as published.

The seed is already Python 3. What changed, and why:
- the address: host and port come from the command line (default 127.0.0.1 21567, the seed's);
- the seed's comments are translated to English.

It sends each line you type and prints the answer; an empty line ends it (at the end of
input Python's input() raises EOFError instead, so end with an empty line).

    python3 tsTclnt.py [HOST [PORT]]
"""

from socket import *
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 21567
BUFSIZ = 1024
ADDR = (HOST, PORT)

tcpCliSock = socket(AF_INET, SOCK_STREAM)	# the TCP client socket
tcpCliSock.connect(ADDR)					# connect to the server

while True:
    data = input('> ')
    if not data:
        break
    tcpCliSock.send(bytes(data, 'utf-8'))
    data = tcpCliSock.recv(BUFSIZ)
    if not data:
        break
    print(data.decode('utf-8'))

tcpCliSock.close()
