#!/usr/bin/env python3
"""A stand-in for one service of the development stack (backend, frontend, memory, engines):
an HTTP server on $PORT (or argv[2]) that answers /health, with the upstream it was given in
$UPSTREAM (the frontend is told the backend's current port by revenant). Only the standard
library."""
import http.server
import json
import os
import signal
import sys

name = sys.argv[1] if len(sys.argv) > 1 else "service"
port = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("PORT", "0"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"service": name, "port": port, "path": self.path,
                           "upstream": os.environ.get("UPSTREAM")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s: %s\n" % (name, fmt % args))


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("%s listening on 127.0.0.1:%d" % (name, port), flush=True)
try:
    server.serve_forever()
except (SystemExit, KeyboardInterrupt):
    pass
