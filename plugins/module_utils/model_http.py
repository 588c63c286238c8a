# -*- coding: utf-8 -*-
# Copyright: comfyops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP for comfyui_model: requests that follow redirects without leaking the token, HEAD metadata (the origin's
sha256), and keep-alive connections for the ranged pieces of a segmented download.

The first request of a file goes through ansible.module_utils.urls (proxies from the environment, TLS settings);
redirects are followed by hand so the token is sent to the URL's own host only. Pieces then go straight to the
resolved URL over one persistent HTTP/1.1 connection per worker (no new TCP/TLS handshake and slow start per
piece); through a proxy, every piece is a request of its own through ansible.module_utils.urls.
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error
import urllib.request
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request

from ansible_collections.comfyops.comfyui.plugins.module_utils.comfyui_api import (
    USER_AGENT,
    _plain_http_context,
    ssl_context,
)

CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
CONTENT_RANGE_UNSATISFIED_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_REDIRECTS = 10
REDACTED = "********"
REDIRECTS = (301, 302, 303, 307, 308)
NETWORK_ERRORS = (OSError, http.client.HTTPException, UrlsConnectionError, socket.timeout)


class DownloadError(Exception):
    """A download that failed; transient errors are retried (and resumed), the others fail at once."""

    def __init__(self, message, transient=False, status=None):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status

    def __str__(self):
        return self.message


def redact(text, secrets):
    """text with every non-empty secret replaced by ********."""
    text = "" if text is None else str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def strip_query(url):
    """A URL for messages: signed CDN URLs carry credentials in their query string."""
    p = urlsplit(url)
    return "%s://%s%s%s" % (p.scheme, p.netloc, p.path, "?..." if p.query else "")


def _same_origin(a, b):
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def content_range(headers):
    """(first, last, total or None) of a 206 answer, None when the header is missing or malformed."""
    m = CONTENT_RANGE_RE.match(headers.get("Content-Range") or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), (int(m.group(3)) if m.group(3) != "*" else None)


def unsatisfied_total(headers):
    m = CONTENT_RANGE_UNSATISFIED_RE.match(headers.get("Content-Range") or "")
    return int(m.group(1)) if m else None


def strong_etag(headers):
    """The ETag when it is a strong validator (usable in If-Range), else None."""
    value = (headers.get("ETag") or "").strip()
    return value if value.startswith('"') and value.endswith('"') and len(value) > 2 else None


def linked_sha256(headers):
    """The sha256 Hugging Face publishes for an LFS file: X-Linked-Etag: "<64 hex>" (None when absent)."""
    value = (headers.get("X-Linked-Etag") or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"').lower()
    return value if SHA256_RE.match(value) else None


def status_of(resp):
    return getattr(resp, "status", None) or getattr(resp, "code", None)


def close_quietly(resp):
    try:
        resp.close()
    except Exception:  # pylint: disable=broad-except
        pass


class Answer:
    """An open response: the URL that answered (after redirects), its status and headers, the origin sha256."""

    def __init__(self, url, resp, origin_sha256):
        self.url = url
        self.resp = resp
        self.status = status_of(resp)
        self.headers = resp.headers
        self.origin_sha256 = origin_sha256

    def close(self):
        close_quietly(self.resp)


def _range_header(start, end):
    return "bytes=%d-%s" % (start, "" if end is None else end - 1)


class Fetcher:
    """Opens the URLs of one module run; shared by the worker threads."""

    def __init__(self, token=None, timeout=60.0, validate_certs=True, ca_path=None, use_proxy=True):
        self.token = token or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy

    def secrets(self):
        return [self.token] if self.token else []

    def _context(self, url):
        if urlsplit(url).scheme == "https":
            return ssl_context(self.validate_certs, self.ca_path)
        return _plain_http_context()

    def headers_for(self, url, original):
        headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        if self.token and _same_origin(url, original):
            headers["Authorization"] = "Bearer " + self.token
        return headers

    def open(self, url, method="GET", start=None, end=None, if_range=None, original=None):
        """An Answer for url (bytes [start, end) when start is set); follows redirects by hand so the token
        never leaves the original host (`original`, default url). 416 is answered, not raised; other HTTP errors
        raise DownloadError."""
        original = original or url
        origin_sha256 = None
        for _hop in range(MAX_REDIRECTS + 1):
            headers = self.headers_for(url, original)
            if start is not None:
                headers["Range"] = _range_header(start, end)
                if if_range:
                    headers["If-Range"] = if_range
            request = Request(headers=headers, use_proxy=self.use_proxy, validate_certs=self.validate_certs,
                              http_agent=USER_AGENT, follow_redirects="none", ca_path=self.ca_path,
                              context=self._context(url), decompress=False, use_netrc=False)
            try:
                resp = request.open(method, url, timeout=self.timeout)
                return Answer(url, resp, origin_sha256 or linked_sha256(resp.headers))
            except urllib.error.HTTPError as e:
                if e.headers is not None:
                    origin_sha256 = origin_sha256 or linked_sha256(e.headers)
                if e.code in REDIRECTS:
                    location = e.headers.get("Location") if e.headers else None
                    close_quietly(e)
                    if not location:
                        raise DownloadError("%s %s: HTTP %d redirect without a Location"
                                            % (method, strip_query(url), e.code), status=e.code)
                    url = urljoin(url, location)
                    continue
                if e.code == 416:
                    return Answer(url, e, origin_sha256)
                close_quietly(e)
                transient = e.code in (408, 425, 429) or e.code >= 500
                hint = ""
                if e.code in (401, 403):
                    hint = (" (the server wants credentials: set token, and accept the model's licence on Hugging "
                            "Face for gated repositories)" if not self.token else
                            " (the token was refused or has no access to this repository)")
                raise DownloadError("%s %s: HTTP %d %s%s" % (method, strip_query(url), e.code, e.reason or "", hint),
                                    transient=transient, status=e.code)
            except urllib.error.URLError as e:
                raise DownloadError("%s %s: %s" % (method, strip_query(url), e.reason), transient=True)
            except NETWORK_ERRORS as e:
                raise DownloadError("%s %s: %s" % (method, strip_query(url), str(e) or type(e).__name__),
                                    transient=True)
        raise DownloadError("%s %s: more than %d redirects" % (method, strip_query(original), MAX_REDIRECTS))

    def head(self, url):
        """HEAD metadata of url: dict(size, etag, origin_sha256, ranges, url); None when the server will not say."""
        try:
            answer = self.open(url, method="HEAD")
        except DownloadError:
            return None  # the GET that follows reports the real problem
        try:
            if answer.status != 200:
                return None
            length = answer.headers.get("Content-Length")
            return dict(size=int(length) if length and length.isdigit() else None, etag=strong_etag(answer.headers),
                        origin_sha256=answer.origin_sha256, url=answer.url,
                        ranges=(answer.headers.get("Accept-Ranges") or "").strip().lower() == "bytes")
        finally:
            answer.close()

    def piece_connection(self, url, original):
        """A connection for ranged GETs of url: keep-alive unless a proxy from the environment applies."""
        parts = urlsplit(url)
        if self.use_proxy:
            proxy = urllib.request.getproxies().get(parts.scheme)
            if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
                return _RequestPieces(self, url, original)
        return _KeepAlivePieces(self, url, original)


class _KeepAlivePieces:
    """Ranged GETs of one URL over one persistent HTTP/1.1 connection (reconnects when the server closes it)."""

    def __init__(self, fetcher, url, original):
        self.fetcher = fetcher
        self.url = url
        self.original = original
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.conn = None
        self.connects = 0

    def _connect(self):
        f = self.fetcher
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=f.timeout, context=f._context(self.url))
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=f.timeout)
        self.connects += 1
        return conn

    def get(self, start, end, if_range):
        headers = self.fetcher.headers_for(self.url, self.original)
        headers["Range"] = _range_header(start, end)
        if if_range:
            headers["If-Range"] = if_range
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request("GET", self.target, headers=headers)
                resp = self.conn.getresponse()
                return Answer(self.url, resp, None)
            except NETWORK_ERRORS as e:
                self.close()
                if reused and attempt == 0:
                    continue  # the server closed the idle keep-alive connection: once more on a new one
                raise DownloadError("GET %s: %s" % (strip_query(self.url), str(e) or type(e).__name__),
                                    transient=True)
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self.conn = None


class _RequestPieces:
    """Ranged GETs through ansible.module_utils.urls (a proxy applies): one request per piece."""

    def __init__(self, fetcher, url, original):
        self.fetcher = fetcher
        self.url = url
        self.original = original
        self.connects = 0

    def get(self, start, end, if_range):
        self.connects += 1
        answer = self.fetcher.open(self.url, start=start, end=end, if_range=if_range, original=self.original)
        self.url = answer.url
        return answer

    def close(self):
        pass
