"""A local HTTP receiver for webhook deliveries, shared by the webhook tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modelplane.webhooks.signing import SIGNATURE_HEADER


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    event: str
    signature: str
    body: bytes
    status: int  # what the receiver answered


@dataclass
class Receiver:
    url: str = ""
    # The first ``fail_first`` deliveries are answered 500, so the sender retries.
    fail_first: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def accepted(self) -> list[Delivery]:
        return [d for d in self.received() if d.status == 200]

    def events(self) -> list[str]:
        return [d.event for d in self.received()]


@contextmanager
def running_receiver(path: str, fail_first: int = 0) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = 500 if len(state.deliveries) < state.fail_first else 200
                state.deliveries.append(Delivery(
                    self.headers["X-Modelplane-Delivery"], self.headers["X-Modelplane-Event"],
                    self.headers[SIGNATURE_HEADER], body, status,
                ))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")
