#!/usr/bin/env python3
"""Seed 002's client for the concurrent example, ported with its logic unchanged.

The seed is Python 3 already. What changed, and why:
- the address: the seed connects to ("127.0.0.1", 8888); here host and port come from the
  command line (default 127.0.0.1 8888).

It sends each line you type and prints the answer ("接收内容:" is "received:"), until you
type "byebye". At the end of input, input() raises EOFError and the client dies with a
traceback; its socket is closed by the kernel as the process exits.

    python3 seed_client.py [HOST [PORT]]
"""
import socket
import sys

sk = socket.socket()
sk.connect((sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 8888))
while True:
    send_data = input("输入发送内容:")
    sk.sendall(bytes(send_data, encoding="utf8"))
    if send_data == "byebye":
        break
    accept_data = str(sk.recv(1024), encoding="utf8")
    print("".join(("接收内容:", accept_data)))
sk.close()
