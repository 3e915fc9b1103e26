#!/usr/bin/env python3
"""Seed 004's note, tried: "unlike TCP, a UDP client can run before the UDP server".

Not a seed program (the seeds have none for this): a client in the style of seed 000's
listing 12 that starts while nobody holds the port, with a timeout so it cannot hang.

It shows two things the lesson teaches:
- unconnected, the datagram is simply lost and nothing reports it: recvfrom gives up when
  settimeout's time runs out. Python's settimeout is not the kernel's SO_RCVTIMEO: it makes
  the socket non-blocking (ioctl FIONBIO) and waits in poll() before each call; when poll
  times out Python raises TimeoutError without calling recvfrom at all;
- connected, the kernel's ICMP "port unreachable" comes back as ECONNREFUSED on the next call
  (poll reports POLLERR at once, and recv raises ConnectionRefusedError).

    python3 early_client.py [HOST [PORT]]
"""
import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 23000

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.3)
sock.sendto(b"anyone there?\n", (host, port))
try:
    print(sock.recvfrom(100))
except TimeoutError:
    print("no answer within 0.3 s, and no error: the datagram was lost")

sock.connect((host, port))
sock.send(b"hello?\n")
try:
    print(sock.recv(100))
except ConnectionRefusedError as error:
    print("connected, the next call says:", error)
sock.close()
