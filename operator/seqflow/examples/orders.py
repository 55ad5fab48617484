"""Handlers of the OrderProcess and RefundProcess example workflows."""

from __future__ import annotations

import asyncio

import seqflow
from seqflow import JsonObject


@seqflow.task("order.validate")
def validate(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if not order.get("order_id"):
        raise seqflow.PermanentError("order_id is missing")
    if not isinstance(order.get("amount"), (int, float)) or order["amount"] <= 0:
        raise seqflow.PermanentError(f"amount must be a positive number, got {order.get('amount')!r}")
    return {**order, "validated": True}


@seqflow.task("order.deduct_money")
async def deduct_money(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    await asyncio.sleep(0.05)  # the payment gateway's round trip
    if context.attempt == 1 and order.get("flaky_gateway"):
        raise ConnectionError("payment gateway timeout")
    return {**order, "payment_id": f"PAY-{context.run_uid[:8]}", "charged": order["amount"]}


@seqflow.task("order.send_email")
def send_email(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**order, "email": f"receipt for {order['order_id']} sent"}


@seqflow.task("refund.check_eligibility")
def check_eligibility(refund: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if refund.get("days_since_purchase", 0) > 30:
        raise seqflow.PermanentError("refunds are possible within 30 days of purchase")
    return {**refund, "eligible": True}


@seqflow.task("refund.return_money")
def return_money(refund: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**refund, "refund_id": f"REF-{context.run_uid[:8]}"}


@seqflow.task("refund.notify")
def notify(refund: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**refund, "notified": True}
