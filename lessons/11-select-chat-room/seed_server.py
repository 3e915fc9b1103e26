#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""server select: seed 003's select chat server, ported to Python 3 with its logic unchanged.

What changed, and only this:
- print is a function, `import Queue` is `import queue`, `except Exception, e` is
  `except Exception as e`;
- the socket carries bytes: a received chunk is decoded before it is formatted into
  "TIME ADDR say: TEXT", and the message is encoded before sendall;
- the address: the seed's default host is '10.1.32.80', a machine on the author's network;
  here 127.0.0.1 and the port from the command line (default 33333, the seed's).

What did not change, on purpose (the lesson's README goes through each): the message is
queued for its sender and the sender put in `outputs`; when the sender is writable the
message is popped and sendall'd to every other client, none of which select was asked
about; the listener is non-blocking and then gets a 2 s timeout (settimeout replaces
setblocking(False): each accept polls first); each client socket is non-blocking, so a full
buffer makes sendall raise and the seed drops that client; the except branch logs
`self.client_info[cli]`, a variable left over from another loop.

It serves for ever: stop it with Ctrl-C.

    python3 seed_server.py [PORT]
"""
import sys
import time
import socket
import select
import logging
import queue

g_select_timeout = 10


class Server(object):
    def __init__(self, host='127.0.0.1', port=33333, timeout=2, client_nums=10):
        self.__host = host
        self.__port = port
        self.__timeout = timeout
        self.__client_nums = client_nums
        self.__buffer_size = 1024

        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setblocking(False)
        self.server.settimeout(self.__timeout)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # keepalive
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # 端口复用 (port reuse)
        server_host = (self.__host, self.__port)
        try:
            self.server.bind(server_host)
            self.server.listen(self.__client_nums)
        except:
            raise
        self.inputs = [self.server]  # select 接收文件描述符列表 (descriptors select reads)
        self.outputs = []  # 输出文件描述符列表 (descriptors to write)
        self.message_queues = {}  # 消息队列 (message queues)
        self.client_info = {}

    def run(self):
        while True:
            readable, writable, exceptional = select.select(self.inputs, self.outputs, self.inputs, g_select_timeout)
            if not (readable or writable or exceptional):
                continue

            for s in readable:
                if s is self.server:  # 是客户端连接 (a client connecting)
                    connection, client_address = s.accept()
                    # print "connection", connection
                    print("%s connect." % str(client_address))
                    connection.setblocking(0)  # 非阻塞 (non-blocking)
                    self.inputs.append(connection)  # 客户端添加到inputs (add the client to inputs)
                    self.client_info[connection] = str(client_address)
                    self.message_queues[connection] = queue.Queue()  # 每个客户端一个消息队列 (a queue per client)
                else:  # 是client, 数据发送过来 (a client sent data)
                    try:
                        data = s.recv(self.__buffer_size)
                    except:
                        err_msg = "Client Error!"
                        logging.error(err_msg)
                    if data:
                        # print data
                        data = "%s %s say: %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), self.client_info[s], data.decode(errors="replace"))
                        self.message_queues[s].put(data)  # 队列添加消息 (queue the message)

                        if s not in self.outputs:  # 要回复消息 (there is something to send)
                            self.outputs.append(s)
                    else:  # 客户端断开 (the client left)
                        # Interpret empty result as closed connection
                        print("Client:%s Close." % str(self.client_info[s]))
                        if s in self.outputs:
                            self.outputs.remove(s)
                        self.inputs.remove(s)
                        s.close()
                        del self.message_queues[s]
                        del self.client_info[s]

            for s in writable:  # outputs 有消息就要发出去了 (outputs with a message: send it)
                try:
                    next_msg = self.message_queues[s].get_nowait()  # 非阻塞获取 (get without blocking)
                except queue.Empty:
                    err_msg = "Output Queue is Empty!"
                    # g_logFd.writeFormatMsg(g_logFd.LEVEL_INFO, err_msg)
                    self.outputs.remove(s)
                except Exception as e:  # 发送的时候客户端关闭了则会出现writable和readable同时有数据,会出现message_queues的keyerror
                    # (a client that closed while we sent shows up readable and writable at once: KeyError)
                    err_msg = "Send Data Error! ErrMsg:%s" % str(e)
                    logging.error(err_msg)
                    if s in self.outputs:
                        self.outputs.remove(s)
                else:
                    for cli in self.client_info:  # 发送给其他客户端 (send to the other clients)
                        if cli is not s:
                            try:
                                cli.sendall(next_msg.encode())
                            except Exception as e:  # 发送失败就关掉 (close it if sending fails)
                                err_msg = "Send Data to %s  Error! ErrMsg:%s" % (str(self.client_info[cli]), str(e))
                                logging.error(err_msg)
                                print("Client: %s Close Error." % str(self.client_info[cli]))
                                if cli in self.inputs:
                                    self.inputs.remove(cli)
                                    cli.close()
                                if cli in self.outputs:
                                    self.outputs.remove(s)
                                if cli in self.message_queues:
                                    del self.message_queues[s]
                                del self.client_info[cli]

            for s in exceptional:
                logging.error("Client:%s Close Error." % str(self.client_info[cli]))
                if s in self.inputs:
                    self.inputs.remove(s)
                    s.close()
                if s in self.outputs:
                    self.outputs.remove(s)
                if s in self.message_queues:
                    del self.message_queues[s]
                del self.client_info[s]


if "__main__" == __name__:
    Server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 33333).run()
