"""A loopback HTTP server for the instance target: serves one directory with range requests
(as image mirrors do), logs every request, and can cut the first download of a file off.

Usage: http_server.py DIRECTORY PORT LOG [--cut-first BYTES]
"""
import argparse
import http.server
import os
import re
import shutil

parser = argparse.ArgumentParser()
parser.add_argument('directory')
parser.add_argument('port', type=int)
parser.add_argument('log')
parser.add_argument('--cut-first', type=int, default=0)
options = parser.parse_args()
cut = {'pending': options.cut_first}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        path = os.path.join(options.directory, os.path.basename(self.path))
        with open(options.log, 'a') as log:
            log.write('%s %s\n' % (self.path, self.headers.get('Range', '-')))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start = 0
        match = re.match(r'bytes=(\d+)-$', self.headers.get('Range', ''))
        if match:
            start = int(match.group(1))
            if start >= size:
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, size - 1, size))
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(size - start))
        self.end_headers()
        with open(path, 'rb') as f:
            f.seek(start)
            if cut['pending']:
                # Half a download, then the connection drops (a mirror going away).
                self.wfile.write(f.read(cut['pending']))
                cut['pending'] = 0
                self.close_connection = True
                return
            shutil.copyfileobj(f, self.wfile, 1 << 20)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(('127.0.0.1', options.port), Handler).serve_forever()
