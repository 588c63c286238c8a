# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small HTTP/JSON client for the ComfyUI API, shared by the comfyops.comfyui modules.

Targets get no extra Python packages: everything goes through ansible.module_utils.urls.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context

USER_AGENT = "ansible-comfyops-comfyui"
_BODY_EXCERPT_CHARS = 300


def comfyui_http_argument_spec():
    """Options shared by every module that talks to ComfyUI (doc fragment comfyops.comfyui.comfyui_http)."""
    return dict(
        # may carry tokens (Authorization): never shown, also not with -vvv
        headers=dict(type="dict", default={}, no_log=True),
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=10.0),
        use_proxy=dict(type="bool", default=True),
    )


class ComfyUIError(Exception):
    """An HTTP exchange with ComfyUI that failed; status is None when no HTTP answer came back."""

    def __init__(self, message, url=None, status=None, body=None, raw_body=None):
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.body = body
        # the complete answer (bytes) for callers that parse error bodies, e.g. POST /prompt's node_errors
        self.raw_body = raw_body

    @property
    def retryable(self):
        """True when waiting may help: no answer yet (starting, restarting) or a 5xx (e.g. a proxy's 502)."""
        return self.status is None or self.status >= 500

    def __str__(self):
        return self.message


class WaitTimeout(ComfyUIError):
    """wait_until ran out of time; carries the last error seen."""

    def __init__(self, message, last_error=None):
        super().__init__(
            message,
            url=getattr(last_error, "url", None),
            status=getattr(last_error, "status", None),
            body=getattr(last_error, "body", None),
        )
        self.last_error = last_error


class Response:
    """A complete HTTP answer (body already read)."""

    def __init__(self, url, status, headers, body):
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ComfyUIError(
                "%s: answer is not JSON (%s): %s" % (self.url, e, excerpt(self.body)),
                url=self.url, status=self.status, body=excerpt(self.body),
            )


def excerpt(body, limit=_BODY_EXCERPT_CHARS):
    """A short, single-line, printable view of a response body for error messages."""
    if isinstance(body, bytes):
        body = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join((body or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _path_segment(value):
    """Quote one URL path segment: class names contain spaces ("Set VAE Decoder Noise") and may contain '/'."""
    return quote(str(value), safe="")


def _join_url(base_url, path):
    """Append path to base_url keeping any sub-path of the base (a proxy's /comfyui/gpu0/).

    urljoin would drop the last segment of a base without a trailing slash, so join by hand.
    """
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# make_context loads the CA bundle, which costs ~60 ms per call; open_url pays that on every request,
# which would dwarf a health probe. Build one context per settings and share it.
_CONTEXTS = {}
_CONTEXTS_LOCK = threading.Lock()


def ssl_context(validate_certs=True, ca_path=None):
    key = (bool(validate_certs), ca_path)
    with _CONTEXTS_LOCK:
        if key not in _CONTEXTS:
            _CONTEXTS[key] = make_context(cafile=ca_path, validate_certs=validate_certs)
        return _CONTEXTS[key]


def _plain_http_context():
    # Request.open builds a full context when given none; plain-HTTP clients skip that cost with a
    # context that trusts nothing, so an unexpected redirect to https fails closed instead of unverified.
    # Cached with the others (~1 ms each to build).
    with _CONTEXTS_LOCK:
        if "plain" not in _CONTEXTS:
            _CONTEXTS["plain"] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return _CONTEXTS["plain"]


_REDIRECTS = (301, 302, 303, 307, 308)


class ComfyUIClient:
    """HTTP/JSON access to one ComfyUI instance (or a proxy path in front of it)."""

    def __init__(self, base_url, headers=None, url_username=None, url_password=None,
                 validate_certs=True, ca_path=None, timeout=10.0, use_proxy=True, context=None):
        problem = url_problem(base_url)
        if problem:
            raise ValueError(problem)
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.timeout = timeout
        if context is None:
            context = ssl_context(validate_certs, ca_path) if parts.scheme == "https" else _plain_http_context()
        # Most requests go straight through http.client (a fraction of Request.open's cost, which rebuilds
        # its opener every call and adds up over a probe's small requests); Request stays for what it
        # does better: proxies from the environment and redirects.
        self._direct = not (use_proxy and _proxied(parts))
        self._context = context
        self._headers = {"User-Agent": USER_AGENT}
        self._headers.update(headers or {})
        if url_username:
            self._headers["Authorization"] = basic_auth(url_username, url_password)
        # Ansible's Request installs its opener process-wide (urllib.request.install_opener), so concurrent
        # clients must not differ in opener settings: credentials therefore go in a header
        # (force_basic_auth), never in a per-opener auth handler, and callers share one context.
        self._request = Request(
            headers=dict(headers or {}),
            use_proxy=use_proxy,
            validate_certs=validate_certs,
            url_username=url_username or None,
            url_password=url_password,
            force_basic_auth=bool(url_username),
            http_agent=USER_AGENT,
            ca_path=ca_path,
            context=context,
        )

    @classmethod
    def from_params(cls, params, base_url, context=None):
        """Build a client from the module options of comfyui_http_argument_spec()."""
        return cls(
            base_url,
            headers=params.get("headers"),
            url_username=params.get("url_username"),
            url_password=params.get("url_password"),
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            timeout=params.get("timeout") or 10.0,
            use_proxy=params.get("use_proxy", True),
            context=context,
        )

    def url(self, path):
        return _join_url(self.base_url, path)

    def request(self, method, path, data=None, headers=None, timeout=None):
        """Send one request and read the whole answer; any non-2xx or transport error is a ComfyUIError."""
        url = self.url(path)
        if self._direct:
            resp = self._send_direct(method, url, data, headers, timeout)
            if resp is not None:
                return resp
        try:
            resp = self._request.open(method, url, data=data, headers=headers or {},
                                      timeout=timeout or self.timeout)
            try:
                return Response(url, resp.status, resp.headers, resp.read())
            finally:
                resp.close()
        except urllib.error.HTTPError as e:
            body = _read_error_body(e)
            raise ComfyUIError("%s %s: HTTP %s: %s" % (method, url, e.code, excerpt(body) or e.reason),
                               url=url, status=e.code, body=excerpt(body), raw_body=body)
        except urllib.error.URLError as e:
            raise ComfyUIError("%s %s: %s" % (method, url, e.reason), url=url)
        except (OSError, http.client.HTTPException, UrlsConnectionError) as e:
            # timeouts, resets, a server that closed the connection mid-answer
            raise ComfyUIError("%s %s: %s" % (method, url, str(e) or type(e).__name__), url=url)

    def _send_direct(self, method, url, data, headers, timeout):
        """One request over a fresh http.client connection; None when the answer is a redirect (Request follows it)."""
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout or self.timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout or self.timeout)
        all_headers = dict(self._headers, **(headers or {}))
        all_headers["Connection"] = "close"
        try:
            conn.request(method, target, body=data, headers=all_headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            # refused (starting, restarting), timeouts, resets, a server that closed mid-answer
            raise ComfyUIError("%s %s: %s" % (method, url, str(e) or type(e).__name__), url=url)
        finally:
            conn.close()
        if resp.status in _REDIRECTS:
            return None
        if resp.status >= 400:
            raise ComfyUIError("%s %s: HTTP %s: %s" % (method, url, resp.status, excerpt(body) or resp.reason),
                               url=url, status=resp.status, body=excerpt(body), raw_body=body)
        return Response(url, resp.status, resp.headers, body)

    def get(self, path, timeout=None):
        return self.request("GET", path, timeout=timeout)

    def get_json(self, path, timeout=None):
        return self.get(path, timeout=timeout).json()

    def post_json(self, path, payload, timeout=None):
        body = json.dumps(payload).encode("utf-8")
        resp = self.request("POST", path, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)
        # ComfyUI answers several POSTs (/interrupt, /free, /queue) with 200 and an empty body
        return resp.json() if resp.body.strip() else None

    def object_info(self, class_name=None, timeout=None):
        """All classes, or one; an unknown class is 200 with {} (test for the key, not the status)."""
        path = "/object_info" if class_name is None else "/object_info/" + _path_segment(class_name)
        return self.get_json(path, timeout=timeout)

    def models(self, folder, timeout=None):
        return self.get_json("/models/" + _path_segment(folder), timeout=timeout)


def redact_url(url):
    """The URL with the password of its userinfo (if any) replaced by ***, for messages."""
    parts = urlsplit(url or "")
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":%s@" % parts.password, ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def url_problem(url):
    """Why url cannot address ComfyUI (in words that never repeat a password), or None."""
    parts = urlsplit(url if isinstance(url, str) else "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host: %r" % (redact_url(url) if isinstance(url, str) else url,)
    if parts.username is not None or parts.password is not None:
        return ("%s carries credentials in the URL: give them as url_username and url_password, which are kept out "
                "of logs and messages" % redact_url(url))
    return None


def basic_auth(username, password):
    """The Authorization header value (a str: Ansible's basic_auth_header returns bytes) for HTTP basic auth."""
    token = base64.b64encode(("%s:%s" % (username, password or "")).encode("utf-8"))
    return "Basic " + token.decode("ascii")


def _proxied(parts):
    """True when the environment routes this URL through a proxy (http_proxy / no_proxy and friends)."""
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname)


def _read_error_body(err):
    try:
        return err.read()
    except Exception:  # the connection may already be gone; the status alone still tells the story
        return b""


def wait_until(deadline, probe, interval=1.0, clock=time.monotonic, sleep=time.sleep):
    """Call probe() until it returns, retrying retryable ComfyUIErrors until the monotonic deadline.

    probe runs at least once even when the deadline has already passed. A non-retryable error (a 4xx:
    wrong path, missing credentials) is raised at once, since waiting cannot fix it. Sleeps never
    overshoot the deadline.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return probe()
        except ComfyUIError as e:
            if not e.retryable:
                raise
            left = deadline - clock()
            if left <= 0:
                raise WaitTimeout("gave up after %d attempt(s): %s" % (attempts, e), last_error=e)
            sleep(min(interval, left))


def shared_context(urls, validate_certs=True, ca_path=None):
    """One SSL context for clients that run concurrently (see ComfyUIClient): a real one if any URL is https."""
    if any(urlsplit(u).scheme == "https" for u in urls):
        return ssl_context(validate_certs, ca_path)
    return _plain_http_context()
