"""Handlers of the OrderProcess and RefundProcess example workflows."""

from __future__ import annotations

import asyncio

import seqflow


@seqflow.task("order.validate")
def validate(order: dict, context: seqflow.TaskContext) -> dict:
    if not order.get("order_id"):
        raise seqflow.PermanentError("order_id is missing")
    if not isinstance(order.get("amount"), (int, float)) or order["amount"] <= 0:
        raise seqflow.PermanentError(f"amount must be a positive number, got {order.get('amount')!r}")
    return {**order, "validated": True}


@seqflow.task("order.deduct_money")
async def deduct_money(order: dict, context: seqflow.TaskContext) -> dict:
    await asyncio.sleep(0.05)  # the payment gateway's round trip
    if context.attempt == 1 and order.get("flaky_gateway"):
        raise ConnectionError("payment gateway timeout")
    return {**order, "payment_id": f"PAY-{context.run_uid[:8]}", "charged": order["amount"]}


@seqflow.task("order.send_email")
def send_email(order: dict, context: seqflow.TaskContext) -> dict:
    return {**order, "email": f"receipt for {order['order_id']} sent"}


@seqflow.task("refund.check_eligibility")
def check_eligibility(refund: dict, context: seqflow.TaskContext) -> dict:
    if refund.get("days_since_purchase", 0) > 30:
        raise seqflow.PermanentError("refunds are possible within 30 days of purchase")
    return {**refund, "eligible": True}


@seqflow.task("refund.return_money")
def return_money(refund: dict, context: seqflow.TaskContext) -> dict:
    return {**refund, "refund_id": f"REF-{context.run_uid[:8]}"}


@seqflow.task("refund.notify")
def notify(refund: dict, context: seqflow.TaskContext) -> dict:
    return {**refund, "notified": True}
