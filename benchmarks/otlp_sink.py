"""An OTLP/HTTP endpoint that accepts every export and keeps nothing: the receiving end
for a benchmark run with tracing on, so that what is measured is the traced process.

    .venv/bin/python benchmarks/otlp_sink.py --port 4318 &
    OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
        .venv/bin/python benchmarks/queue_bench.py --quick --modes tablo

It prints how many export requests and bytes it took when stopped (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

received = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        received["requests"] += 1
        received["bytes"] += size
        self.send_response(200)  # an empty ExportTraceServiceResponse
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        print(f"otlp sink: {received['requests']} requests, {received['bytes']} bytes", flush=True)


if __name__ == "__main__":
    main()
