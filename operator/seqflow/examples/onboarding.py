"""Handlers of the UserOnboarding example workflow."""

from __future__ import annotations

import seqflow


@seqflow.task("user.create_account")
def create_account(user: dict, context: seqflow.TaskContext) -> dict:
    return {**user, "account_id": f"ACC-{user['email'].split('@')[0]}"}


@seqflow.task("user.send_welcome_email")
async def send_welcome_email(user: dict, context: seqflow.TaskContext) -> dict:
    return {**user, "welcome_email": "sent"}


@seqflow.task("user.assign_role")
def assign_role(user: dict, context: seqflow.TaskContext) -> dict:
    return {**user, "role": user.get("requested_role", "member")}
