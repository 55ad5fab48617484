"""Handlers of the OrderPicking example workflow: a step per line of an order."""

from __future__ import annotations

import seqflow
from seqflow import JsonObject

STOCK = {"SKU-1": "A-01", "SKU-2": "B-07", "SKU-3": "C-12"}


@seqflow.task("warehouse.pick")
def pick(line: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    """Picks one line of the order (`line`, at `index`) from its bin; an unknown SKU fails for good."""
    sku = line["line"]["sku"]
    if sku not in STOCK:
        raise seqflow.PermanentError(f"{sku} is not stocked here")
    return {"sku": sku, "qty": line["line"]["qty"], "bin": STOCK[sku]}


@seqflow.task("warehouse.label")
def label(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    """Labels the parcel with what was picked (a line that could not be, tolerated, is null)."""
    picked = [p for p in order["picked"] if p is not None]
    return {
        "order_id": order["order_id"],
        "parcel": [f"{p['qty']} x {p['sku']}" for p in picked],
        "missing": [
            line["sku"] for line, p in zip(order["lines"], order["picked"], strict=True) if p is None
        ],
    }
