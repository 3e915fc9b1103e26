#!/usr/bin/env python3
# coding: utf-8
"""Seed 004's tsTserv.py: a TCP server that stamps each message with the time, as published.

The seed is already Python 3. What changed, and why:
- the address: the seed binds ('', 21567), every interface; here 127.0.0.1 (this project
  talks only to loopback) and the port from the command line (default 21567, the seed's);
- the seed's comments are translated to English.

It reads until recv returns an empty bytes object (the client closed: end of file), then
closes that client and waits for the next, for ever: stop it with Ctrl-C. Note what it
sends: '[%s] %s' % (ctime(), data) formats the bytes object itself, so the client sees
"b'Hello'" inside the reply, as the seed's own sample run shows.

    python3 tsTserv.py [PORT]
"""

from socket import *
from time import ctime
import sys


HOST = '127.0.0.1'		# the seed: '' (bind() then takes any address)
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 21567
BUFSIZ = 1024	# a 1 KB buffer
ADDR = (HOST, PORT)

tcpSerSock = socket(AF_INET, SOCK_STREAM)	# the TCP server socket
tcpSerSock.bind(ADDR)						# bind it to the server's address
tcpSerSock.listen(5)	# start listening; the argument is how many connection requests may queue

while True:
    print('waiting for connection...')
    tcpCliSock, addr = tcpSerSock.accept()	# wait for a client to connect
    print('...connected from:', addr)

    while True:
        data = tcpCliSock.recv(BUFSIZ)		# wait for the client's message
        if not data:						# empty: the client has left
            break							# out of the conversation loop
        tcpCliSock.send(bytes('[%s] %s' % (ctime(), data), 'utf-8'))

    tcpCliSock.close()						# close this client's connection

# tcpSerSock.close()
