"""A local OpenAI-compatible embeddings endpoint for the cache tests, run as its own process:
`python embeddings_server.py PORT KEY LOG`.

POST /v1/embeddings answers OpenAI's documented JSON ({"object": "list", "data": [{"object":
"embedding", "index": 0, "embedding": [...]}], "model", "usage"}) with a bag-of-words vector
(each lower-cased word hashed into 64 dimensions), 401 without `Authorization: Bearer KEY`,
and 500 while the file LOG + ".fail" exists. Every request's model and input go to LOG, one
JSON line each.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DIMENSIONS = 64


def vector(text: str) -> list[float]:
    v = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        v[zlib.crc32(word.encode()) % DIMENSIONS] += 1.0
    return v


def main() -> None:
    port, key, log = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/embeddings":
                return self._answer(404, {"error": {"message": "not found", "type": "x"}})
            if self.headers.get("Authorization") != f"Bearer {key}":
                return self._answer(401, {"error": {"message": "Incorrect API key provided",
                                                    "type": "invalid_request_error"}})
            if Path(str(log) + ".fail").exists():
                return self._answer(500, {"error": {"message": "overloaded", "type": "server_error"}})
            req = json.loads(raw)
            with log.open("a") as f:
                f.write(json.dumps({"model": req["model"], "input": req["input"]}) + "\n")
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            self._answer(200, {
                "object": "list", "model": req["model"],
                "data": [{"object": "embedding", "index": i, "embedding": vector(t)}
                         for i, t in enumerate(inputs)],
                "usage": {"prompt_tokens": 8, "total_tokens": 8}})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
