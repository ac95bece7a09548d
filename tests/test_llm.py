"""The OpenAI-compatible chat client against a real HTTP server on loopback that imitates the endpoint."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from discl.llm import ChatClient, LLMError


class FakeEndpoint:
    """Serves /v1/chat/completions; each request takes the next scripted reply (the last one repeats).
    A reply is (status, body) or ("sleep", seconds) to stall past the client's timeout."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                step = endpoint.script.pop(0) if len(endpoint.script) > 1 else endpoint.script[0]
                if step[0] == "sleep":
                    time.sleep(step[1])
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


def test_timeouts_are_retried():
    with FakeEndpoint([("sleep", 1.5), (200, chat_reply("fast"))]) as server:
        assert client(server.url, timeout=0.5).chat([]) == "fast"
    assert len(server.requests) == 2


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
