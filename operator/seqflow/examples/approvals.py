"""Handlers of the ExpenseApproval example workflow."""

from __future__ import annotations

import seqflow
from seqflow import JsonObject


@seqflow.task("expense.submit")
def submit(expense: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**expense, "submitted": True}


@seqflow.task("expense.pay")
def pay(expense: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if not expense.get("approved_by"):
        raise seqflow.PermanentError("not approved: the approval signal needs an approved_by")
    return {**expense, "paid": expense["amount"]}
