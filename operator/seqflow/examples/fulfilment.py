"""Handlers of the OrderFulfilment and Shipping example workflows."""

from __future__ import annotations

import seqflow
from seqflow import JsonObject


@seqflow.task("fraud.check")
def check_fraud(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if order.get("country") not in (None, order.get("card_country")):
        raise seqflow.PermanentError(
            f"card from {order.get('card_country')} for a delivery to {order['country']}"
        )
    return {**order, "fraud_checked": True}


@seqflow.task("notify.email")
def send_email(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {"email": f"confirmation for {order['order_id']} sent to {order.get('email', 'the customer')}"}


@seqflow.task("notify.sms")
async def send_sms(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {"sms": f"{order['order_id']} is on its way ({order.get('tracking', 'no tracking yet')})"}


@seqflow.task("shipping.pack")
def pack(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**order, "parcel": f"PCL-{order['order_id']}"}


@seqflow.task("shipping.dispatch")
def dispatch(order: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**order, "tracking": f"TRK-{context.run_uid[:8]}"}
