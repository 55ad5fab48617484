"""End to end in a real headless Chromium (Debian's, driven by Playwright): sign in with a token,
start a run from the dashboard and watch it reach Succeeded without reloading, retry a failed
run, send a signal from the signal form (whose name field the browser validates), and see the API
server's refusal shown to a read-only user. No page may log an error or a warning (a
Content-Security-Policy violation or an invalid `pattern` attribute would be one) other than the
browser's line for a call the API refused on purpose.

SEQFLOW_SCREENSHOTS=DIR saves the runs page and a run's timeline there (the README's pictures).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url
from tests.e2e.test_history import admin_token, get
from tests.support import CHROMIUM_FLAGS, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]
# The browser logs each call the API refuses: the tests make such calls on purpose.
REFUSED = re.compile(r"Failed to load resource: the server responded with a status of (401|403|422) ")
SCREENSHOTS = os.environ.get("SEQFLOW_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make tools` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a browser context of its own: an error or a warning logged by any page of that
    context, or an uncaught exception in one, fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    problems: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and not REFUSED.match(message.text):
            problems.append(f"console {message.type}: {message.text}")

    context.on("console", logged)
    context.on("weberror", lambda error: problems.append(f"page error: {error.error}"))
    yield context.new_page()
    context.close()
    assert problems == []


def sign_in(page: Page, operator: OperatorProcess, token: str, *, user: str) -> None:
    page.goto(http_url(operator) + "/")
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user")).to_have_text(f"Signed in as {user}")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def test_start_a_run_and_watch_it_succeed_live(
    cluster: Cluster, namespace: str, operator: OperatorProcess, page: Page
):
    schema = {"type": "object", "required": ["customer"], "properties": {"customer": {"type": "string"}}}
    steps = [
        {"name": "Validate", "handler": "test.step"},
        {"name": "Notify", "parallel": [
            {"name": "Email", "handler": "test.step"}, {"name": "Sms", "handler": "test.step"},
        ]},
        {"name": "Charge", "handler": "test.flaky", "retry": {"maxRetries": 2, "backoffSeconds": 1}},
        {"name": "Gift", "handler": "test.step", "when": "input.customer == 'nobody'"},
        {"name": "Ship", "handler": "test.step"},
    ]  # fmt: skip
    cluster.apply(workflow("order", steps, inputSchema=schema), namespace=namespace)
    sign_in(page, operator, admin_token(cluster), user="admin")

    page.goto(f"{http_url(operator)}/#/workflows?namespace={namespace}")
    page.get_by_role("link", name="Start order", exact=True).click()
    editor = page.get_by_label("Input (a JSON object)")
    expect(editor).to_have_value('{\n  "customer": ""\n}')  # a skeleton from the inputSchema
    editor.fill('{"customer": ')
    expect(page.locator("#verdict")).to_contain_text("Not JSON")
    editor.fill('{"sleep": 0.6}')
    expect(page.locator("#verdict")).to_contain_text("'customer' is a required property (422)")
    editor.fill('{"customer": "Ada", "sleep": 0.6}')
    expect(page.locator("#verdict")).to_contain_text("matches the Workflow's inputSchema")
    page.get_by_role("button", name="Start run").click()

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("order-")
    page.evaluate("window.stayedOnPage = true")
    expect(heading.locator(".badge")).to_have_text("Running", timeout=10_000)
    expect(page.locator("svg rect.attempt")).not_to_have_count(0)
    screenshot(page, "run-running.png")
    expect(heading.locator(".badge")).to_have_text("Succeeded", timeout=30_000)
    assert page.evaluate("window.stayedOnPage") is True  # it moved without a reload
    bars = page.locator("svg rect.attempt")
    expect(bars).to_have_count(7)  # Validate, Notify and its 2 members, Charge twice, Ship
    expect(page.locator("svg line.backoff")).to_have_count(1)
    expect(page.locator("svg text", has_text="skipped")).to_have_count(1)
    name = heading.inner_text().split()[0]
    run = Runs(cluster.kubeconfig).get(namespace, name)
    assert run["spec"]["input"] == {"customer": "Ada", "sleep": 0.6}
    assert run["metadata"]["annotations"]["seqflow.io/created-by"] == "admin"
    screenshot(page, "run-timeline.png")

    page.locator('[data-step="Charge"] > summary').click()
    expect(page.locator('[data-step="Charge"]')).to_contain_text("flaky failure on attempt 1")
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("row", name=name).locator(".badge")).to_have_text("Succeeded")
    screenshot(page, "runs.png")  # every namespace's runs
    page.get_by_label("Namespace").fill(namespace)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(2)  # the header and this run


def failed_payment(cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, *, run: str) -> Path:
    """A run of Reserve then Pay whose Pay failed for good while the returned file exists."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    steps = [
        {"name": "Reserve", "handler": "test.step"},
        {"name": "Pay", "handler": "test.fails_while_file_exists"},
    ]
    cluster.apply(workflow("pay", steps), namespace=namespace)
    cluster.apply(workflow_run(run, "pay", {"blocker": str(blocker)}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, run).get("status", {}).get("phase") == "Failed", timeout=30)
    return blocker


def test_open_a_failed_run_and_retry_it(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page, tmp_path: Path
):
    blocker = failed_payment(cluster, runs, namespace, tmp_path, run="r-fail")

    sign_in(page, operator, admin_token(cluster), user="admin")
    page.goto(f"{http_url(operator)}/#/runs?namespace={namespace}&phase=Failed")
    page.get_by_role("link", name="r-fail").click()
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Failed")
    expect(page.locator(".facts")).to_contain_text("is in the way")
    blocker.unlink()
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#notice")).to_have_text("Retry: done.")
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Succeeded", timeout=30_000)
    assert runs.get(namespace, "r-fail")["status"]["nodes"][1]["attempts"] == 2


def test_a_read_only_user_sees_the_refusal(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page
):
    cluster.apply(workflow("slow", [{"name": "Wait", "wait": {"signal": "go"}}]), namespace=namespace)
    cluster.apply(workflow_run("r-wait", "slow"), namespace=namespace)
    cluster.kubectl(
        "create", "role", "reader", "--verb=get,list", "--resource=workflowruns.seqflow.io", "-n", namespace
    )
    cluster.kubectl("create", "rolebinding", "reader", "--role=reader", "--user=bob", "-n", namespace)
    assert cluster.control_plane is not None
    sign_in(page, operator, cluster.control_plane.token_for("bob"), user="bob")

    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-wait")
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Running")
    page.get_by_role("button", name="Cancel").click()
    refusal = f'user "bob" may not patch workflowruns in namespace "{namespace}" (403)'
    expect(page.locator("#notice")).to_have_text(refusal)
    assert not runs.get(namespace, "r-wait")["spec"].get("cancel")
    page.get_by_role("link", name="Workflows").click()
    expect(page.locator("#notice")).to_contain_text('user "bob" may not list workflows in all namespaces')


def test_send_a_signal_from_the_signal_form(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page
):
    steps = [{"name": "Gate", "wait": {"signal": "go"}}, {"name": "Ship", "handler": "test.step"}]
    cluster.apply(workflow("gated", steps), namespace=namespace)
    cluster.apply(workflow_run("r-gate", "gated"), namespace=namespace)
    sign_in(page, operator, admin_token(cluster), user="admin")

    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-gate")
    badge = page.get_by_role("heading", level=1).locator(".badge")
    expect(badge).to_have_text("Running")
    expect(page.get_by_role("heading", name="Send a signal")).to_be_visible()
    field = page.get_by_label("Signal", exact=True)
    for name in ("-go", "go-", "go now", "go!", "gö"):  # not a step's wait.signal
        field.fill(name)
        assert field.evaluate("input => !input.checkValidity() && input.validity.patternMismatch"), name
    for name in ("go", "Approved", "step.2_done", "a" * 63):
        field.fill(name)
        assert field.evaluate("input => input.checkValidity()") is True, name

    field.fill("go")
    page.get_by_label("Payload (JSON object)").fill('{"by": "ada"}')
    page.get_by_role("button", name="Send signal").click()
    expect(page.locator("#notice")).to_have_text("Signal go: done.")
    expect(badge).to_have_text("Succeeded", timeout=30_000)
    expect(page.get_by_role("heading", name="Send a signal")).to_be_hidden()
    assert runs.get(namespace, "r-gate")["spec"]["signals"] == {"go": {"by": "ada"}}


def test_a_stored_output_shows_its_first_part_and_downloads_whole(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page
):
    cluster.apply(workflow("large", [{"name": "Grow", "handler": "test.step"}]), namespace=namespace)
    document = "d" * 50_000
    cluster.apply(workflow_run("r-large", "large", {"doc": document}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "r-large").get("status", {}).get("phase") == "Succeeded", timeout=30)

    sign_in(page, operator, admin_token(cluster), user="admin")
    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-large")
    output = page.locator("details.stored", has_text="Run output")
    expect(output.locator("summary")).to_contain_text("(stored, ")
    output.locator("summary").click()
    expect(output.locator("pre")).to_contain_text('{"doc":"ddd')
    assert len(output.locator("pre").inner_text()) < 4200  # its first 4 KiB, not 50 KB
    with page.expect_download() as downloaded:
        output.get_by_role("button", name="Download").click()
    saved = json.loads(Path(downloaded.value.path()).read_text())
    assert saved == {"doc": document, "trail": ["Grow"], "step": 1}


def test_an_attempts_kept_log_opens_under_it(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page
):
    cluster.apply(workflow("logged", [{"name": "Charge", "handler": "test.traced"}]), namespace=namespace)
    cluster.apply(workflow_run("r-logged", "logged", {"lines": 2}), namespace=namespace)
    wait_for(
        lambda: runs.get(namespace, "r-logged").get("status", {}).get("phase") == "Succeeded", timeout=30
    )
    logs = f"/api/v1/namespaces/{namespace}/runs/r-logged/logs"
    wait_for(
        lambda: get(operator, logs, admin_token(cluster))[1].get("items"), timeout=30, what="the log kept"
    )

    sign_in(page, operator, admin_token(cluster), user="admin")
    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-logged")
    step = page.locator('details[data-step="Charge"]')
    step.locator("summary").first.click()
    log = step.locator("details", has_text="Log (")
    expect(log.locator("summary")).to_have_text(re.compile(r"Log \(\d+ bytes\)"))
    log.locator("summary").click()
    expect(log.locator("pre.log")).to_contain_text("INFO shop.payments: charging, line 1 of Charge")


def test_a_fan_outs_counters_pages_of_items_and_a_failed_items_attempts(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page, tmp_path: Path
):
    failing = tmp_path / "failing"
    failing.write_text("x")
    each = {
        "items": "input.lines",
        "toleratedFailures": 2,
        "step": {"handler": "test.item", "retry": {"maxRetries": 0}},
    }
    cluster.apply(workflow("squares", [{"name": "Square", "forEach": each}]), namespace=namespace)
    given = {
        "lines": list(range(120)),
        "log": str(tmp_path / "log"),
        "fail": [7, 73],
        "failing": str(failing),
    }
    cluster.apply(workflow_run("r-fan", "squares", given), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "r-fan").get("status", {}).get("phase") == "Succeeded", timeout=60)

    sign_in(page, operator, admin_token(cluster), user="admin")
    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-fan")
    fan_out = page.locator(".fan-out")
    expect(fan_out).to_contain_text(
        "120 items started: 118 succeeded, 2 failed"
    )  # (counted from the history)
    expect(fan_out).to_contain_text("Items 1–50 of 120")
    expect(page.locator("details[data-step]")).to_have_count(51)  # the forEach and a page of its items
    fan_out.get_by_role("link", name="Square/73").click()
    expect(fan_out).to_contain_text("Items 51–100 of 120")
    item = page.locator('details[data-step="Square/73"]')
    expect(item).to_have_attribute("open", "")
    expect(item).to_contain_text("item 73 failed")
    fan_out.get_by_role("button", name="Next items →").click()
    expect(fan_out).to_contain_text("Items 101–120 of 120")
    expect(page.locator("details[data-step]")).to_have_count(21)
    expect(fan_out.get_by_role("button", name="Next items →")).to_be_disabled()

    slow = {"lines": list(range(40)), "log": str(tmp_path / "log2"), "sleep": 0.5}
    cluster.apply(
        workflow("slow-squares", [{"name": "Square", "forEach": {**each, "maxParallel": 4}}]),
        namespace=namespace,
    )
    cluster.apply(workflow_run("r-slow", "slow-squares", slow), namespace=namespace)
    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-slow")
    live = re.compile(r"40 items: \d+ succeeded, 0 failed, 4 running, \d+ not started")
    expect(page.locator(".fan-out")).to_contain_text(live, timeout=15_000)  # the live node's counters


def test_retry_a_failed_run_from_its_failed_step_and_follow_the_link_back(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page, tmp_path: Path
):
    blocker = failed_payment(cluster, runs, namespace, tmp_path, run="r-from")
    blocker.unlink()

    sign_in(page, operator, admin_token(cluster), user="admin")
    page.goto(f"{http_url(operator)}/#/runs/{namespace}/r-from")
    pay = page.locator('details[data-step="Pay"]')
    pay.locator("summary").first.click()
    pay.get_by_role("button", name="Retry from here").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("r-from-retry-")
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Succeeded", timeout=30_000)
    facts = page.locator(".facts")
    expect(facts).to_contain_text("from Pay")
    facts.get_by_role("link", name="r-from").click()
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Failed")  # untouched


def test_a_workflows_revisions_and_the_runs_of_one(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page
):
    cluster.apply(workflow("evolving", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    wait_for(
        lambda: cluster.get_json("workflow", "evolving", "-n", namespace).get("status", {}).get("revision"),
        timeout=30,
    )
    old = workflow_run("on-one", "evolving")
    cluster.apply(old, namespace=namespace)
    wait_for(lambda: runs.get(namespace, "on-one").get("status", {}).get("phase") == "Succeeded", timeout=30)
    edited = [{"name": "A", "handler": "test.step"}, {"name": "B", "handler": "test.step"}]
    cluster.apply(workflow("evolving", edited), namespace=namespace)
    cluster.apply(workflow_run("on-two", "evolving"), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "on-two").get("status", {}).get("phase") == "Succeeded", timeout=30)
    sign_in(page, operator, admin_token(cluster), user="admin")

    page.goto(f"{http_url(operator)}/#/workflows?namespace={namespace}")
    card = page.get_by_role("region", name="Workflow evolving")
    card.get_by_text("Revisions", exact=True).click()
    expect(card.get_by_label("Revision 2")).to_contain_text("Revision 2 (current)")
    expect(card.get_by_label("Revision 2")).to_contain_text("2 tasks: A, B")
    expect(card.get_by_label("Revision 1")).to_contain_text("1 task: A")
    card.get_by_label("Revision 1").get_by_role("link", name="Its runs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Runs of revision 1 of evolving")
    expect(page.get_by_role("link", name="on-one")).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(2)  # the header and the run on revision 1
