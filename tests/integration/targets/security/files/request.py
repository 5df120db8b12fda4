"""Send one request to a helper's socket, as a client of another release would, and print
the reply line. Usage: request.py SOCKET OP ARGS_JSON TIMEOUT"""
import json
import socket
import sys

path, op, args, timeout = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(timeout + 30)
sock.connect(path)
sock.sendall(json.dumps({'id': 1, 'op': op, 'args': args, 'timeout': timeout}).encode() + b'\n')
print(sock.makefile('rb').readline().decode())
