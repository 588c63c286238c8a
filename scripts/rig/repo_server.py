"""The rig's repository server: /srv over HTTP as http.server serves it, and the same tree again under /private/
behind basic auth, so the tests have a package index that needs credentials (the comfyui scenario's pip).
The login below is the rig's; molecule/comfyui/molecule.yml gives pip the same one.
"""
import base64
import functools
import hmac
import http.server
import sys

EXPECTED = "Basic " + base64.b64encode(b"comfyops-rig:pip-sentinel-5e2b").decode()


class Handler(http.server.SimpleHTTPRequestHandler):
    def _authorized(self):
        if self.path != "/private" and not self.path.startswith("/private/"):
            return True
        if hmac.compare_digest(self.headers.get("Authorization", ""), EXPECTED):
            self.path = self.path[len("/private"):] or "/"
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="comfyops rig"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        if self._authorized():
            super().do_GET()

    def do_HEAD(self):
        if self._authorized():
            super().do_HEAD()


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "/srv"
    http.server.ThreadingHTTPServer(("", 80), functools.partial(Handler, directory=root)).serve_forever()
