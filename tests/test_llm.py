"""The OpenAI-compatible chat client against a real HTTP server on loopback that imitates the endpoint
(and against hostile ones: a redirect to another host, a reply trickled a byte at a time)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from discl.llm import ChatClient, LLMError


class FakeEndpoint:
    """Serves /v1/chat/completions; each request takes the next scripted reply (the last one repeats).
    A reply is (status, body[, headers]) or ("stall",): call ``on_stall`` (the request has arrived), then
    answer only when the test is over, i.e. past any client timeout."""

    def __init__(self, script, on_stall=lambda: None):
        self.script = list(script)
        self.requests = []
        self.release = threading.Event()
        self.on_stall = on_stall
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                endpoint.requests.append({"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps(chat_reply("stolen")).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                step = endpoint.script.pop(0) if len(endpoint.script) > 1 else endpoint.script[0]
                if step[0] == "stall":
                    endpoint.on_stall()
                    endpoint.release.wait(60)
                    step = (200, chat_reply("too late"))
                status, payload = step[0], step[1]
                headers = step[2] if len(step) > 2 else {}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def chat_reply(text):
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def client(url, sleeps=None, **kw):
    return ChatClient(url, "test-model", kw.pop("api_key", None), timeout=kw.pop("timeout", 2.0), max_retries=kw.pop("max_retries", 3),
                      backoff=0.5, sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def test_success_sends_model_messages_and_bearer_key():
    with FakeEndpoint([(200, chat_reply("hello"))]) as server:
        out = client(server.url, api_key="sk-test-123").chat([{"role": "user", "content": "hi"}], temperature=0.5)
    assert out == "hello"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test-123"
    assert request["body"] == {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}


def test_500_and_429_are_retried_with_backoff_and_retry_after():
    sleeps = []
    script = [(500, {"error": "boom"}), (429, {"error": "slow down"}, {"Retry-After": "3"}), (503, b"down"), (200, chat_reply("ok"))]
    with FakeEndpoint(script) as server:
        assert client(server.url, sleeps).chat([]) == "ok"
    assert len(server.requests) == 4
    assert sleeps == [0.5, 3.0, 2.0]  # exponential 0.5 * 2^k, except where Retry-After says otherwise


def test_retries_are_bounded_and_the_error_says_what_happened():
    sleeps = []
    with FakeEndpoint([(500, {"error": "always broken"})]) as server:
        with pytest.raises(LLMError, match="after 3 attempts.*HTTP 500") as err:
            client(server.url, sleeps, max_retries=2).chat([])
    assert len(server.requests) == 3 and len(sleeps) == 2 and err.value.transport


def test_client_errors_are_not_retried_and_the_key_is_redacted():
    with FakeEndpoint([(401, {"error": "bad key sk-secret-9"})]) as server:
        with pytest.raises(LLMError) as err:
            client(server.url, api_key="sk-secret-9").chat([])
    assert len(server.requests) == 1 and "HTTP 401" in str(err.value)
    assert "sk-secret-9" not in str(err.value) and not err.value.transport


class FakeClock:
    """The clock of the client's deadlines (ChatClient.timer): time moves only when the test calls
    ``advance``, so a timeout happens exactly when the test says, however slow the machine."""

    def __init__(self):
        self.now = 0.0
        self.started = []  # the length of every deadline started, in order
        self._pending = []  # [due, fire, live]
        self._lock = threading.Lock()

    def timer(self, seconds, fire):
        entry = [self.now + seconds, fire, True]
        with self._lock:
            self.started.append(seconds)
            self._pending.append(entry)

        def cancel():
            entry[2] = False

        return cancel

    def advance(self, seconds):
        with self._lock:
            self.now += seconds
            due = [e for e in self._pending if e[2] and e[0] <= self.now]
            for entry in due:
                entry[2] = False
        for _, fire, _ in due:
            fire()


def test_timeouts_are_retried():
    clock = FakeClock()
    sleeps = []
    # The stalled request's deadline runs out the moment the server holds it; the retry's never does.
    # The real per-read socket timeout (30 s) is far from both.
    with FakeEndpoint([("stall",), (200, chat_reply("fast"))], on_stall=lambda: clock.advance(30)) as server:
        assert client(server.url, sleeps, timeout=30, timer=clock.timer).chat([]) == "fast"
    assert len(server.requests) == 2
    assert clock.started == [30, 30] and sleeps == [0.5]  # one deadline per attempt; one backoff after the timeout


def test_a_timeout_is_reported_as_one():
    clock = FakeClock()
    with FakeEndpoint([("stall",)], on_stall=lambda: clock.advance(30)) as server:
        with pytest.raises(LLMError, match=r"after 1 attempts; last error: TimeoutError: no complete reply within 30 s") as err:
            client(server.url, timeout=30, max_retries=0, timer=clock.timer).chat([])
    assert err.value.transport and len(server.requests) == 1


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", json.dumps({"choices": []}).encode(),
                                  json.dumps({"choices": [{"message": {"content": None}}]}).encode()])
def test_malformed_replies_are_retried_then_reported(body):
    with FakeEndpoint([(200, body)]) as server:
        with pytest.raises(LLMError, match="malformed reply"):
            client(server.url, max_retries=1).chat([])
    assert len(server.requests) == 2


def test_endpoint_down_fails_fast_and_clearly():
    with FakeEndpoint([(200, chat_reply("x"))]) as server:
        url = server.url
    with pytest.raises(LLMError, match="no usable reply after 2 attempts"):
        client(url, max_retries=1).chat([])


def test_key_comes_from_the_environment_and_is_never_shown(monkeypatch):
    monkeypatch.setenv("DISCL_TEST_KEY", "sk-env-456")
    c = ChatClient.from_env("http://127.0.0.1:1/v1", "m", "DISCL_TEST_KEY")
    assert c.api_key == "sk-env-456" and "sk-env-456" not in repr(c)
    monkeypatch.delenv("DISCL_TEST_KEY")
    with pytest.raises(LLMError, match="DISCL_TEST_KEY.*is not set"):
        ChatClient.from_env("http://127.0.0.1:1/v1", "m", "DISCL_TEST_KEY")
    assert ChatClient.from_env("http://127.0.0.1:1/v1", "m", None).api_key is None


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirects_are_refused_and_the_key_goes_nowhere(code):
    """A 3xx to another host: urllib would resend the Authorization header there (302: as a GET, whose
    reply it would accept). The client refuses in one line and the other host sees nothing."""
    with FakeEndpoint([(200, chat_reply("stolen"))]) as elsewhere:
        with FakeEndpoint([(code, b"", {"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/steal"})]) as server:
            with pytest.raises(LLMError) as err:
                client(server.url, api_key="sk-secret-7").chat([])
    assert elsewhere.requests == [] and len(server.requests) == 1
    message = str(err.value)
    assert f"redirects (HTTP {code}) to http://localhost:" in message and "set prompts.base_url to the final address" in message
    assert "sk-secret-7" not in message and not err.value.transport


class TrickleServer:
    """A raw loopback server that answers one byte every 50 ms, forever (until the test ends): each
    socket read returns quickly, so only a deadline for the whole request stops the client."""

    def __init__(self, trickle_headers: bool):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        self.reply = (head if trickle_headers else b"") + b"{" * 100000
        self.prefix = b"" if trickle_headers else head
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(self.prefix)
                for byte in self.reply:
                    if self.stop.wait(0.05):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:  # the client hung up: what a deadline does
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize("trickle_headers", [False, True], ids=["body", "status-and-headers"])
def test_the_timeout_bounds_the_whole_request_not_each_read(trickle_headers):
    with TrickleServer(trickle_headers) as server:
        start = time.monotonic()
        with pytest.raises(LLMError, match=r"last error: TimeoutError: no complete reply within 0.5 s"):
            client(server.url, timeout=0.5, max_retries=0).chat([])
        elapsed = time.monotonic() - start
    assert elapsed < 5  # the trickle alone would take over an hour
