"""The small inventory service the stock-check example's http steps call (`make demo` serves it
on 127.0.0.1): `GET /stock/SKU` answers the stock of a SKU (503 the first time it is asked for
each, as a busy service would), `POST /reservations` reserves an order's lines. Standard library
only: it is a stand-in for a service of your own."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from seqflow import JsonObject

STOCK = {"SKU-1": 40, "SKU-2": 3, "SKU-3": 12}


class _Inventory(BaseHTTPRequestHandler):
    server: InventoryService

    def do_GET(self) -> None:
        sku = self.path.removeprefix("/stock/")
        if not self.path.startswith("/stock/") or sku not in STOCK:
            self._answer(404, {"error": f"no SKU {sku}"})
        elif self.server.first_ask(sku):
            self._answer(503, {"error": "busy, ask again"}, retry_after="1")
        else:
            self._answer(200, {"sku": sku, "available": STOCK[sku]})

    def do_POST(self) -> None:
        order = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        short = [line["sku"] for line in order.get("lines", []) if STOCK.get(line["sku"], 0) < line["qty"]]
        if self.path != "/reservations" or short:
            self._answer(409, {"error": f"not enough stock of {', '.join(short)}"})
        else:
            self._answer(201, {"reservation": f"R-{order['order']}", "lines": len(order["lines"])})

    def _answer(self, status: int, body: JsonObject, *, retry_after: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class InventoryService(ThreadingHTTPServer):
    """The service, answering in a thread of its own from `start()` to `stop()`."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Inventory)
        self._asked: set[str] = set()
        self._lock = threading.Lock()

    def first_ask(self, sku: str) -> bool:
        with self._lock:
            first = sku not in self._asked
            self._asked.add(sku)
            return first

    def start(self) -> InventoryService:
        threading.Thread(target=self.serve_forever, name="inventory", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
