"""Handlers of the MoneyTransfer example workflow: a saga whose debit is refunded when the
credit fails. The accounts live in this process: an example, not a bank."""

from __future__ import annotations

import seqflow
from seqflow import JsonObject

CLOSED_ACCOUNTS = {"ACC-CLOSED"}


@seqflow.task("transfer.debit")
def debit(transfer: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**transfer, "debit_id": f"DEB-{context.run_uid[:8]}"}


@seqflow.task("transfer.credit")
def credit(transfer: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if transfer["to_account"] in CLOSED_ACCOUNTS:
        raise seqflow.PermanentError(f"account {transfer['to_account']} is closed")
    return {**transfer, "credit_id": f"CRE-{context.run_uid[:8]}"}


@seqflow.task("transfer.refund")
def refund(transfer: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    """Compensates the debit: given the debit step's output, pays the amount back."""
    return {"refunded": transfer["amount"], "refund_of": transfer["debit_id"]}


@seqflow.task("transfer.notify")
def notify(transfer: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**transfer, "notified": transfer["from_account"]}
