"""Handlers of the UserOnboarding example workflow."""

from __future__ import annotations

import seqflow
from seqflow import JsonObject


@seqflow.task("user.create_account")
def create_account(user: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    email = user.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise seqflow.PermanentError(
            "email is required: the input needs an email address, like a@example.com"
        )
    return {**user, "account_id": f"ACC-{email.split('@')[0]}"}


@seqflow.task("user.send_welcome_email")
async def send_welcome_email(user: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**user, "welcome_email": "sent"}


@seqflow.task("user.assign_role")
def assign_role(user: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**user, "role": user.get("requested_role", "member")}
