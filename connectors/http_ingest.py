"""``POST /v1/events``: submit one item (a JSON object) or a batch (a JSON array) over HTTP.

The answer is ``200`` with one result per item, in order::

    {"accepted": 1, "rejected": 1, "results": [
        {"status": "accepted", "topic": "posts", "key": "u1", "event_id": "e1"},
        {"status": "rejected", "topic": "posts", "reason": "missing_field", "message": "user_id: is required"}]}

A rejected item is also in the dead-letter topic. Whole-request problems answer without results:
``401`` (bearer token missing or wrong, when ``ingest_http_token`` is set), ``411`` (no
Content-Length), ``413`` (body over ``ingest_http_max_body_bytes``; nothing was read, so the
client still holds it), ``400`` (the body is not JSON: also dead-lettered as ``malformed_json``).
``GET /healthz`` answers ``ok``. Video items must give a ``url``: paths are refused here.

>>> from pathlib import Path
>>> from moodshift.connectors.producer import EventProducer, RecordingClient
>>> settings = ConnectorSettings(ingest_http_port=0, media_dir=Path("/tmp/doc-media"))
>>> ingestor = Ingestor(settings, EventProducer(settings, "http", client=RecordingClient()), source="http")
>>> server = IngestServer(settings, ingestor); server.start()
>>> import requests
>>> requests.post(server.url + "/v1/events", json=[{"event_id": "e1", "user_id": "u1",
...     "event_time": "2024-05-01T12:00:00Z", "text": "hi"}, {"user_id": "u1"}]).json()["rejected"]
1
>>> server.stop()
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from moodshift.connectors.ingest import Ingestor
from moodshift.connectors.producer import DeliveryFailed
from moodshift.connectors.record import Reason
from moodshift.connectors.topics import POSTS
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"


class IngestServer:
    """A threaded HTTP server around an :class:`Ingestor`; ``start`` runs it in a daemon thread."""

    def __init__(self, settings: ConnectorSettings, ingestor: Ingestor) -> None:
        self.settings = settings
        self.ingestor = ingestor
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer((settings.ingest_http_host, settings.ingest_http_port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ingest-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle_events(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as error:  # as schemas.parse_json_object
            message = f"$: the body is not valid UTF-8 JSON ({error})"
            self.ingestor.producer.send_dead_letter(body, topic=POSTS, reason=Reason.MALFORMED_JSON, message=message)
            return 400, {"error": Reason.MALFORMED_JSON.value, "message": message}
        items = payload if isinstance(payload, list) else [payload]
        outcomes = []
        for item in items:
            # surrogatepass: a "\ud800" escape in the body must not stop the batch (the item is rejected)
            raw = json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogatepass") if isinstance(payload, list) else body
            if isinstance(item, dict):
                outcomes.append(self.ingestor.submit_object(item, raw))
            else:
                outcomes.append(self.ingestor.submit(raw))  # not an object: rejected as wrong_type
        try:
            self.ingestor.producer.flush()
        except DeliveryFailed as error:  # the client may retry; event ids let the pipeline deduplicate
            return 503, {"error": "kafka_unavailable", "message": str(error)}
        accepted = sum(o.accepted for o in outcomes)
        return 200, {"accepted": accepted, "rejected": len(outcomes) - accepted,
                     "results": [o.to_dict() for o in outcomes]}


class _Handler(BaseHTTPRequestHandler):
    server_state: IngestServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        state = self.server_state
        if self.path != EVENTS_PATH:
            return self._answer(404, {"error": "not_found"})
        token = state.settings.ingest_http_token
        if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
            return self._answer(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._answer(411, {"error": "length_required"})
        if int(length) > state.settings.ingest_http_max_body_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            return self._answer(413, {"error": Reason.OVERSIZED.value,
                                      "message": f"body over {state.settings.ingest_http_max_body_bytes} bytes"})
        status, answer = state.handle_events(self.rfile.read(int(length)))
        self._answer(status, answer)

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)
