#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""client.py: seed 003's select chat client, ported to Python 3 with its logic unchanged.

What changed, and only this: print() is a function; the socket carries bytes, so a typed
line is encoded before sendall and a received chunk decoded before print; the server's
address comes from the command line (default 127.0.0.1 33333) instead of the seed's
hard-coded '10.1.32.80'.

What did not change, on purpose: send_msg strips the newline from each typed line and
sendall()s the bare text, so nothing on the wire says where one message ends. The seed's
server lived with that because its recv(1024) happened to get one message each time: the
client sleeps 0.1 s between lines. socklab's room does the same thing on purpose: a line
without a newline, followed by quiet, is taken as a message (see the lesson's README).
At end of input the seed's loop would keep sending empty strings; type `exit` to leave.

    python3 -u seed_client.py [HOST [PORT]]      (-u: print at once, even into a pipe)
"""
import sys
import time
import socket
import threading


class Client(object):
    def __init__(self, host, port=33333, timeout=1, reconnect=2):
        self.__host = host
        self.__port = port
        self.__timeout = timeout
        self.__buffer_size = 1024
        self.__flag = 1
        self.client = None
        self.__lock = threading.Lock()

    @property
    def flag(self):
        return self.__flag

    @flag.setter
    def flag(self, new_num):
        self.__flag = new_num

    def __connect(self):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # client.bind(('0.0.0.0', 12345,))
        client.setblocking(True)
        client.settimeout(self.__timeout)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # 端口复用
        server_host = (self.__host, self.__port)
        try:
            client.connect(server_host)
        except:
            raise
        return client

    def send_msg(self):
        if not self.client:
            return
        while True:
            time.sleep(0.1)
            # data = raw_input()
            data = sys.stdin.readline().strip()
            if "exit" == data.lower():
                with self.__lock:
                    self.flag = 0
                break
            self.client.sendall(data.encode())
        return

    def recv_msg(self):
        if not self.client:
            return
        while True:
            data = None
            with self.__lock:
                if not self.flag:
                    print('ByeBye~~')
                    break
            try:
                data = self.client.recv(self.__buffer_size)
            except socket.timeout:
                continue
            except:
                raise
            if data:
                print("%s\n" % data.decode(errors="replace"))
            time.sleep(0.1)
        return

    def run(self):
        self.client = self.__connect()
        send_proc = threading.Thread(target=self.send_msg)
        recv_proc = threading.Thread(target=self.recv_msg)
        recv_proc.start()
        send_proc.start()
        recv_proc.join()
        send_proc.join()
        self.client.close()


if "__main__" == __name__:
    host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 33333
    Client(host, port).run()
