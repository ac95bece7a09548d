"""A minimal client for OpenAI-compatible chat endpoints (hosted APIs and local servers alike),
standard library only. Bounded retries with exponential backoff on timeouts, connection errors,
429 and 5xx replies; the API key is read from the environment and never logged or written.

Two guards the usual clients lack:
- Redirects are refused, never followed: urllib would send the Authorization header to whatever
  host a 3xx names (and turn the POST into a GET whose reply it would accept).
- ``timeout`` bounds the whole request (connect, send, status line, headers, body), not each socket
  read: a server that trickles its reply a byte at a time cannot hold the client past it.

Why not the ``openai`` package: it sits on httpx, whose timeouts are per socket operation too (a total
timeout was declined: encode/httpx#1450, encode/httpcore#936), so it would need this deadline anyway.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_REPLY_BYTES = 16 << 20  # a chat reply is a few kB; more is a broken or hostile server


class LLMError(RuntimeError):
    """The endpoint could not give a usable answer. ``transport`` is True when it was unreachable or
    kept failing (so asking again for another class is pointless), False for a bad request."""

    def __init__(self, message: str, transport: bool = True):
        super().__init__(message)
        self.transport = transport


class _Redirected(Exception):
    def __init__(self, code: int, location: str):
        super().__init__(code, location)
        self.code, self.location = code, location


class _HTTPStatus(Exception):
    """An HTTP error status, with the start of its body (read before the deadline closes the connection)."""

    def __init__(self, err: urllib.error.HTTPError, detail: bytes):
        super().__init__(f"HTTP {err.code} {err.reason}")
        self.code, self.reason, self.headers, self.detail = err.code, err.reason, err.headers, detail


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        raise _Redirected(code, newurl)


#: (seconds, fire) -> cancel: calls ``fire`` once ``seconds`` have passed, unless cancelled first.
StartTimer = Callable[[float, Callable[[], None]], Callable[[], None]]


def start_timer(seconds: float, fire: Callable[[], None]) -> Callable[[], None]:
    """The real clock: a daemon thread that fires after ``seconds``."""
    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer.cancel


class _Deadline:
    """Shuts down the request's sockets when its total time is up, which wakes any blocked read."""

    def __init__(self, seconds: float, timer: StartTimer = start_timer):
        self.seconds = seconds
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._start_timer = timer
        self._cancel: Callable[[], None] = lambda: None

    def _shut(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            for sock in self._sockets:
                self._shut(sock)

    def connection(self, cls):
        """A factory for urllib's do_open whose connections register their socket once connected (the
        socket itself: urllib drops the connection's reference while the reply is still being read)."""

        def make(*args, **kwargs):
            connection = cls(*args, **kwargs)
            connect = connection.connect

            def connect_and_register():
                connect()
                with self._lock:
                    self._sockets.append(connection.sock)
                    if self.expired.is_set():
                        self._shut(connection.sock)

            connection.connect = connect_and_register
            return connection

        return make

    def __enter__(self) -> _Deadline:
        self._cancel = self._start_timer(self.seconds, self._expire)
        return self

    def __exit__(self, *exc) -> None:
        self._cancel()


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(deadline.connection(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            kwargs = {"context": self._context}
            if getattr(self, "_check_hostname", None) is not None:  # Python < 3.12
                kwargs["check_hostname"] = self._check_hostname
            return self.do_open(deadline.connection(http.client.HTTPSConnection), req, **kwargs)

    # Proxies from the environment still apply (urllib's default ProxyHandler).
    return urllib.request.build_opener(_RefuseRedirects, HTTP, HTTPS)


@dataclass
class ChatClient:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # repr=False: never printed with the client
    timeout: float = 60.0  # seconds for a whole request, reply included
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    # The clock of each request's deadline. A seam for tests: a fake clock makes a timeout happen at a
    # chosen moment, so a test needs no real stall raced against a real timer.
    timer: StartTimer = field(default=start_timer, repr=False)

    @classmethod
    def from_env(cls, base_url: str, model: str, api_key_env: str | None, **kwargs) -> ChatClient:
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise LLMError(f"environment variable {api_key_env} (prompts.api_key_env) is not set; set it, or set "
                               "prompts.api_key_env to null for a local server that needs no key", transport=False)
        return cls(base_url, model, key, **kwargs)

    def _redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def _request(self, payload: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", data=payload, headers=headers, method="POST")

    def _post(self, payload: bytes) -> bytes:
        """One request under one deadline: the reply body, or _HTTPStatus / a transport error."""
        with _Deadline(self.timeout, self.timer) as deadline:
            try:
                with _opener(deadline).open(self._request(payload), timeout=self.timeout) as reply:
                    body = reply.read(MAX_REPLY_BYTES + 1)
            except urllib.error.HTTPError as err:
                raise _HTTPStatus(err, err.read(300) if not deadline.expired.is_set() else b"") from err
            except (OSError, http.client.HTTPException):
                if deadline.expired.is_set():
                    raise TimeoutError(f"no complete reply within {self.timeout:g} s") from None
                raise
        if deadline.expired.is_set():  # a reply without a length ends where the deadline cut it
            raise TimeoutError(f"no complete reply within {self.timeout:g} s")
        if len(body) > MAX_REPLY_BYTES:
            raise ValueError(f"reply larger than {MAX_REPLY_BYTES >> 20} MiB")
        return body

    def chat(self, messages: list[dict], temperature: float = 1.0) -> str:
        """The assistant's reply text. Raises LLMError after ``max_retries`` failed retries."""
        payload = json.dumps({"model": self.model, "messages": messages, "temperature": temperature}).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * 2**attempt)
            try:
                return _content(self._post(payload))
            except _Redirected as moved:
                raise LLMError(
                    f"{self.base_url}: the server redirects (HTTP {moved.code}) to {self._redact(moved.location)}; redirects are "
                    "not followed, as they would carry the API key along: set prompts.base_url to the final address",
                    transport=False) from None
            except _HTTPStatus as err:
                detail = self._redact(err.detail.decode("utf-8", "replace"))
                last = f"HTTP {err.code} {err.reason}: {detail}".strip()
                if err.code not in RETRY_STATUS:
                    raise LLMError(f"{self.base_url}: {last}", transport=False) from None
                retry_after = err.headers.get("Retry-After") if err.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = min(self.max_backoff, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", err)
                last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
            except ValueError as err:  # malformed reply: may be a transient proxy error page
                last = f"malformed reply: {err}"
            if attempt < self.max_retries:
                self.sleep(wait)
        raise LLMError(f"{self.base_url}: no usable reply after {self.max_retries + 1} attempts; last error: {self._redact(last)}")


def _content(body: bytes) -> str:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg})") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("no choices[0].message.content in the reply") from None
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content
