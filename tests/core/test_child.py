"""A child-process server: its URL once it answers, a clear error naming the param when it cannot start."""
import sys

import pytest

from rlbff_lib.core.child import child_server, get_json

SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
httpd = HTTPServer(("127.0.0.1", 0), H)
print(f"serving http://127.0.0.1:{httpd.server_address[1]}/v1 model x", flush=True)
httpd.serve_forever()
"""


def test_yields_the_url_once_ready_and_stops_the_child():
    with child_server([sys.executable, "-c", SERVER], "test.server", "/models", timeout_s=20) as url:
        assert get_json(url + "/models") == {"path": "/v1/models"}
    with pytest.raises(OSError):
        get_json(url + "/models", timeout_s=1.0)


def test_a_child_that_does_not_start_is_named():
    cmd = [sys.executable, "-c", "import sys; print('no port for you'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"^test\.param: the server did not start: no port for you"):
        with child_server(cmd, "test.param"):
            pass
