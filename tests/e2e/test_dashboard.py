"""End to end in a real headless Chromium (Debian's, driven by Playwright): sign in with a token,
start a run from the dashboard and watch it reach Succeeded without reloading, retry a failed
run, and see the API server's refusal shown to a read-only user. The page must log no error
other than those refusals (a Content-Security-Policy violation would be one).

SEQFLOW_SCREENSHOTS=DIR saves the runs page and a run's timeline there (the README's pictures).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url
from tests.e2e.test_history import admin_token
from tests.support import CHROMIUM_FLAGS, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]
REFUSALS = ("status of 401", "status of 403", "status of 422")  # the browser logs refused calls
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
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert [p for p in problems if not any(r in p for r in REFUSALS)] == []


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


def test_open_a_failed_run_and_retry_it(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, page: Page, tmp_path: Path
):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    steps = [
        {"name": "Reserve", "handler": "test.step"},
        {"name": "Pay", "handler": "test.fails_while_file_exists"},
    ]
    cluster.apply(workflow("pay", steps), namespace=namespace)
    cluster.apply(workflow_run("r-fail", "pay", {"blocker": str(blocker)}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "r-fail").get("status", {}).get("phase") == "Failed", timeout=30)

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
