"""A minimal client for OpenAI-compatible chat endpoints (hosted APIs and local servers alike),
standard library only. Bounded retries with exponential backoff on timeouts, connection errors,
429 and 5xx replies; the API key is read from the environment and never logged or written."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class LLMError(RuntimeError):
    """The endpoint could not give a usable answer. ``transport`` is True when it was unreachable or
    kept failing (so asking again for another class is pointless), False for a bad request."""

    def __init__(self, message: str, transport: bool = True):
        super().__init__(message)
        self.transport = transport


@dataclass
class ChatClient:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # repr=False: never printed with the client
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls, base_url: str, model: str, api_key_env: str | None, **kwargs) -> "ChatClient":
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

    def chat(self, messages: list[dict], temperature: float = 1.0) -> str:
        """The assistant's reply text. Raises LLMError after ``max_retries`` failed retries."""
        payload = json.dumps({"model": self.model, "messages": messages, "temperature": temperature}).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * 2**attempt)
            try:
                with urllib.request.urlopen(self._request(payload), timeout=self.timeout) as reply:
                    body = reply.read()
                return _content(body)
            except urllib.error.HTTPError as err:
                detail = self._redact(err.read(300).decode("utf-8", "replace"))
                last = f"HTTP {err.code} {err.reason}: {detail}".strip()
                if err.code not in RETRY_STATUS:
                    raise LLMError(f"{self.base_url}: {last}", transport=False) from None
                retry_after = err.headers.get("Retry-After") if err.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = min(self.max_backoff, float(retry_after))
            except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as err:
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
