#!/usr/bin/env python3
"""Seed 002's "simple concurrent example": a ThreadingTCPServer, ported with its logic unchanged.

The seed is Python 3 already. What changed, and why:
- the address: the seed binds ("127.0.0.1", 8888); here the port comes from the command
  line (default 8888, the seed's).

Each client gets a thread running MyServer.handle: it prints what the client sent and
answers with a line typed at the server's own keyboard (input(">>>>>")), until the client
says "byebye". Two things the seed does not expect, both shown by `make python-7`:
- after "byebye" the handler closes the connection, and its outer `while 1` goes round
  again and calls recv on the closed socket: OSError [Errno 9] Bad file descriptor, which
  socketserver reports as "Exception occurred during processing of request";
- a client that simply goes away: recv returns b'' (printed as an empty line), the handler
  answers anyway, and the answer after that fails with BrokenPipeError, the error in the
  seed's own "related problems" section.

    python3 seed_server.py [PORT]
"""
import socketserver
import sys


class MyServer(socketserver.BaseRequestHandler):

    def handle(self):
        while 1:
            conn = self.request
            addr = self.client_address
            while 1:
                accept_data = str(conn.recv(1024), encoding="utf8")
                print(accept_data)
                if accept_data == "byebye":
                    break
                send_data = bytes(input(">>>>>"), encoding="utf8")
                conn.sendall(send_data)
            conn.close()


if __name__ == '__main__':
    sever = socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8888), MyServer)
    sever.serve_forever()
