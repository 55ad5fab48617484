"""Every example Workflow in workflows/ run locally through the seqflow.testing harness, with
the example handlers (seqflow.examples), on a virtual clock: their real outcomes, retries,
compensations, sub-workflows, waits for signals and their timeouts. Job steps are stubbed (they
need a cluster's images); the stock check's http steps call the example inventory service,
served here on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from seqflow.api.models import HistoryEvent, NodePhase, RunPhase
from seqflow.examples.inventory import InventoryService

if TYPE_CHECKING:  # (imported by pytest as a plugin, before this module)
    from seqflow.testing import LocalHarness

pytest_plugins = ["seqflow.testing"]

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
EXAMPLES = ["seqflow.examples"]
TESTED = {
    "expense-approval.yaml",
    "money-transfer.yaml",
    "order-fulfilment.yaml",
    "order-picking.yaml",
    "order-process.yaml",
    "refund-process.yaml",
    "report-exports.yaml",
    "shipping.yaml",
    "stock-check.yaml",
    "user-onboarding.yaml",
}


@pytest.fixture
def inventory() -> Iterator[str]:
    service = InventoryService(0).start()
    yield f"http://127.0.0.1:{service.server_address[1]}"
    service.stop()


def test_every_example_workflow_is_run_here():
    assert {path.name for path in WORKFLOWS.glob("*.yaml")} == TESTED


def test_order_process_retries_the_flaky_gateway(seqflow_local: LocalHarness):
    order = {"order_id": "ORD-001", "amount": 1500, "flaky_gateway": True}
    result = seqflow_local.run("workflows/order-process.yaml", input=order, handlers=EXAMPLES)
    assert result.phase == RunPhase.SUCCEEDED, result.summary()
    assert result.steps["DeductMoney"].attempts == 2
    assert [r.type for r in result.history_of("DeductMoney")] == [
        HistoryEvent.TASK_STARTED,
        HistoryEvent.TASK_RETRY,
        HistoryEvent.TASK_STARTED,
        HistoryEvent.TASK_COMPLETED,
    ]
    assert result.output is not None
    assert result.output["payment_id"] == f"PAY-{result.uid[:8]}"
    assert result.output["email"] == "receipt for ORD-001 sent"
    assert result.virtual_seconds >= 2  # the backoff, in virtual time


def test_refunds_within_30_days_are_paid_and_later_ones_refused(seqflow_local: LocalHarness):
    files = "workflows/refund-process.yaml"
    paid = seqflow_local.run(
        files, input={"order_id": "ORD-1", "amount": 15, "days_since_purchase": 3}, handlers=EXAMPLES
    )
    late = seqflow_local.run(
        files, input={"order_id": "ORD-2", "amount": 80, "days_since_purchase": 45}, handlers=EXAMPLES
    )
    assert paid.succeeded and paid.output is not None
    assert paid.output["notified"] is True and paid.output["refund_id"].startswith("REF-")
    assert (late.phase, late.reason) == (RunPhase.FAILED, "TaskFailed")
    assert late.steps["CheckEligibility"].attempts == 1
    assert "ReturnMoney" not in late.steps


def test_money_transfer_refunds_the_debit_when_the_credit_fails(seqflow_local: LocalHarness):
    files = "workflows/money-transfer.yaml"
    done = seqflow_local.run(
        files, input={"from_account": "ACC-1", "to_account": "ACC-2", "amount": 250}, handlers=EXAMPLES
    )
    undone = seqflow_local.run(
        files, input={"from_account": "ACC-1", "to_account": "ACC-CLOSED", "amount": 90}, handlers=EXAMPLES
    )
    assert done.succeeded and done.output is not None and done.output["notified"] == "ACC-1"
    assert (undone.phase, undone.reason) == (RunPhase.FAILED, "Compensated")
    assert undone.steps["Debit"].phase == NodePhase.COMPENSATED
    assert undone.steps["Debit:compensate"].output == {
        "refunded": 90,
        "refund_of": f"DEB-{undone.uid[:8]}",
    }


@pytest.mark.parametrize(
    ("order", "fraud_check"),
    [
        (
            {
                "order_id": "ORD-100",
                "amount": 2500,
                "email": "ann@example.com",
                "country": "NL",
                "card_country": "NL",
            },
            NodePhase.SUCCEEDED,
        ),
        ({"order_id": "ORD-101", "amount": 40, "email": "bo@example.com"}, NodePhase.SKIPPED),
    ],
    ids=["big order, checked", "small order, not checked"],
)
def test_order_fulfilment_ships_through_the_shipping_sub_workflow(
    seqflow_local: LocalHarness, order, fraud_check
):
    result = seqflow_local.run(
        "workflows/order-fulfilment.yaml", "workflows/shipping.yaml", input=order, handlers=EXAMPLES
    )
    assert result.succeeded, result.summary()
    assert result.steps["FraudCheck"].phase == fraud_check
    shipped = result.step("Ship").run
    assert shipped is not None and shipped.workflow == "shipping"
    assert result.step("Ship > Pack").output == {
        **order,
        "validated": True,
        **({"fraud_checked": True} if fraud_check == NodePhase.SUCCEEDED else {}),
        "parcel": f"PCL-{order['order_id']}",
    }
    tracking = f"TRK-{shipped.uid[:8]}"
    assert result.output is not None
    assert result.output["sms"] == f"{order['order_id']} is on its way ({tracking})"
    assert result.output["email"] == f"confirmation for {order['order_id']} sent to {order['email']}"


def test_order_fulfilment_refuses_a_card_from_another_country(seqflow_local: LocalHarness):
    order = {"order_id": "ORD-102", "amount": 5000, "country": "NL", "card_country": "US"}
    result = seqflow_local.run(
        "workflows/order-fulfilment.yaml", "workflows/shipping.yaml", input=order, handlers=EXAMPLES
    )
    assert (result.phase, result.reason) == (RunPhase.FAILED, "TaskFailed")
    assert result.steps["FraudCheck"].error == "card from US for a delivery to NL"
    assert "Ship" not in result.steps


def test_order_fulfilment_checks_its_input_schema(seqflow_local: LocalHarness):
    result = seqflow_local.run(
        "workflows/order-fulfilment.yaml",
        "workflows/shipping.yaml",
        input={"order_id": "X"},
        handlers=EXAMPLES,
    )
    assert (result.phase, result.reason) == (RunPhase.FAILED, "InputInvalid")


def test_shipping_runs_on_its_own(seqflow_local: LocalHarness):
    result = seqflow_local.run("workflows/shipping.yaml", input={"order_id": "ORD-7"}, handlers=EXAMPLES)
    assert result.output == {"order_id": "ORD-7", "parcel": "PCL-ORD-7", "tracking": f"TRK-{result.uid[:8]}"}


def test_order_picking_tolerates_the_line_that_is_not_stocked(seqflow_local: LocalHarness):
    lines = [
        {"sku": "SKU-1", "qty": 2},
        {"sku": "SKU-2", "qty": 1},
        {"sku": "SKU-9", "qty": 1},
        {"sku": "SKU-3", "qty": 5},
    ]
    result = seqflow_local.run(
        "workflows/order-picking.yaml", input={"order_id": "ORD-007", "lines": lines}, handlers=EXAMPLES
    )
    assert result.succeeded, result.summary()
    assert result.output == {
        "order_id": "ORD-007",
        "parcel": ["2 x SKU-1", "1 x SKU-2", "5 x SKU-3"],
        "missing": ["SKU-9"],
    }
    assert (result.steps["Pick/2"].phase, result.steps["Pick/2"].attempts) == (NodePhase.FAILED, 1)
    assert result.steps["Pick/0"].output == {"sku": "SKU-1", "qty": 2, "bin": "A-01"}


def test_report_exports_with_their_jobs_stubbed(seqflow_local: LocalHarness):
    days = ["2026-11-30", "2026-12-01", "2026-12-02"]
    export = {"bucket": "acme", "region": "eu-west-1", "cli_version": "2.17.0", "days": days}
    result = seqflow_local.run(
        "workflows/report-exports.yaml", input=export, stubs={"Copy": {"copied": True}}
    )
    assert result.succeeded, result.summary()
    assert [result.steps[f"Copy/{i}"].output for i in range(3)] == [{"copied": True}] * 3
    assert result.output == {**export, "results": [{"copied": True}] * 3}


def test_stock_check_asks_the_inventory_again_after_its_retry_after(
    seqflow_local: LocalHarness, inventory: str
):
    lines = [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-3", "qty": 5}]
    order = {"order_id": "ORD-010", "inventory": inventory, "lines": lines}
    result = seqflow_local.run("workflows/stock-check.yaml", input=order)
    assert result.succeeded, result.summary()
    assert [result.steps[f"Stock/{i}"].attempts for i in range(2)] == [2, 2]  # busy (503) the first time
    assert result.steps["Stock/1"].output == {"sku": "SKU-3", "available": 12}
    assert result.output == {"reservation": "R-ORD-010", "lines": 2}


def test_stock_check_fails_for_good_when_the_stock_is_short(seqflow_local: LocalHarness, inventory: str):
    order = {"order_id": "ORD-011", "inventory": inventory, "lines": [{"sku": "SKU-2", "qty": 9}]}
    result = seqflow_local.run("workflows/stock-check.yaml", input=order)
    assert (result.phase, result.reason) == (RunPhase.FAILED, "TaskFailed")
    assert result.steps["Reserve"].attempts == 1
    assert "answered 409" in (result.steps["Reserve"].error or "")


def test_user_onboarding(seqflow_local: LocalHarness):
    user = {"email": "alice@example.com", "requested_role": "editor"}
    result = seqflow_local.run("workflows/user-onboarding.yaml", input=user, handlers=EXAMPLES)
    assert result.output == {**user, "account_id": "ACC-alice", "welcome_email": "sent", "role": "editor"}


def test_an_expense_is_paid_once_approved(seqflow_local: LocalHarness):
    expense = {"employee": "bob", "amount": 120, "what": "conference ticket"}
    result = seqflow_local.run(
        "workflows/expense-approval.yaml",
        input=expense,
        handlers=EXAMPLES,
        on_wait={"approved": {"approved_by": "alice"}},
    )
    assert result.succeeded, result.summary()
    assert result.output == {**expense, "submitted": True, "approved_by": "alice", "paid": 120}


def test_an_expense_never_approved_times_out_in_virtual_time(seqflow_local: LocalHarness):
    result = seqflow_local.run(
        "workflows/expense-approval.yaml", input={"employee": "bob", "amount": 1}, handlers=EXAMPLES
    )
    assert (result.phase, result.reason) == (RunPhase.FAILED, "TaskFailed")
    assert result.steps["Approval"].attempts == 4  # a day each, and the default retries between
    assert result.virtual_seconds > 4 * 86400
    print(f"4 days of waiting in {result.wall_seconds:.3f} s of wall time")
    assert result.wall_seconds < 5


def test_an_approval_given_ahead_is_taken_at_once(seqflow_local: LocalHarness):
    result = seqflow_local.run(
        "workflows/expense-approval.yaml",
        input={"employee": "bob", "amount": 7},
        handlers=EXAMPLES,
        signals={"approved": {"approved_by": "carol"}},
    )
    assert result.succeeded and result.output is not None and result.output["paid"] == 7
    assert result.virtual_seconds < 1


def test_a_flaky_gateway_is_retried(seqflow_local: LocalHarness):  # (the README's example)
    result = seqflow_local.run(
        "workflows/order-process.yaml",
        input={"order_id": "ORD-1", "amount": 10, "flaky_gateway": True},
        handlers=["seqflow.examples"],
        stubs={"SendEmail": {"email": "not sent"}},
    )
    assert result.steps["DeductMoney"].attempts == 2
    assert result.output == {"email": "not sent"}
