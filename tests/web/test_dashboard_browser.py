"""The dashboard in headless Chromium, driven by Playwright, on a real 3-node cluster.

The page is served by node2, which starts as a follower, leads after the
leader is killed, and loses the leadership again when node3 comes back: the
page must follow all of it. With P2PQ_DASHBOARD_SCREENSHOT=path the test
also saves a screenshot taken while the failover shows (docs/dashboard.png
is made this way).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import pytest

from webcluster import WebCluster

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVED_BY = 1   # node2
TIMEOUT_MS = 15_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip(f"chromium not installed ({CHROMIUM} missing; .ci/run installs it with apt-get as root)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def cluster():
    with WebCluster(3, slots=2) as c:
        yield c


@pytest.fixture(scope="module")
def page(cluster):
    profile = tempfile.mkdtemp(prefix="p2pq-chromium-")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 960})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def expect(locator):
    return sync_api.expect(locator)


sync_api.expect.set_options(timeout=TIMEOUT_MS)


def test_the_page_shows_three_nodes_and_the_leader(cluster, page):
    page.goto(cluster.url(SERVED_BY))
    expect(page.locator("#live-text")).to_have_text("live")
    expect(page.locator("#cluster .node")).to_have_count(3)
    expect(page.locator("#leader-name")).to_have_text("node3")
    expect(page.locator('#cluster .node[data-node="node3"]')).to_have_attribute("data-role", "leader")
    expect(page.locator("#node-name")).to_have_text("node2")
    expect(page.locator("#cluster .link.up")).to_have_count(2)
    # node2, the highest after the leader, holds the copy: the header says so as the picture does
    expect(page.locator('#cluster .node[data-node="node2"]')).to_have_attribute("data-role", "follower")
    expect(page.locator("#node-role")).to_have_text("follower")


def test_a_task_submitted_through_the_form_appears_and_finishes(cluster, page):
    page.fill("#submit-task", "fibonacci 25")
    page.fill("#submit-priority", "1")
    page.click("#submit-button")
    # The page holds no secret: the first write asks for the cluster token.
    expect(page.locator("#token-row")).to_be_visible()
    expect(page.locator("#submit-status")).to_contain_text("paste the cluster's token below")
    page.fill("#token-input", cluster.token())
    page.click("#submit-button")
    expect(page.locator("#submit-status")).to_contain_text("submitted ")
    task_id = page.locator("#submit-status").inner_text().split()[1]
    row = page.locator(f'#tasks tr[data-task="{task_id}"]')
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(page.locator("#detail")).to_contain_text("75025")  # fibonacci(25), in the task's detail
    expect(page.locator("#count-succeeded")).not_to_have_text("0")


class SteadyLoad(threading.Thread):
    """Submits short tasks at about `per_s` a second until stopped (through node1, which survives)."""

    def __init__(self, cluster: WebCluster, per_s: float) -> None:
        super().__init__(daemon=True)
        self.client, self.per_s, self.stopped = cluster.client(0, timeout_s=20), per_s, threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopped.wait(1 / self.per_s):
            i += 1
            self.client.submit("sleep", 0.4, priority=1 + i % 5)


def test_after_the_leader_is_killed_the_page_shows_the_new_leader(cluster, page):
    shot = os.environ.get("P2PQ_DASHBOARD_SCREENSHOT")
    if shot:  # a picture worth taking: half a minute of steady work, then the failover
        load = SteadyLoad(cluster, per_s=8)
        load.start()
        page.wait_for_timeout(30_000)
    else:  # work in flight, so the failover also shows in the counters
        for i in range(40):
            cluster.client(0).submit("sleep", 0.3, priority=1 + i % 5)
    cluster.kill(2, signal.SIGKILL)
    expect(page.locator("#leader-name")).to_have_text("node2", timeout=10_000)
    expect(page.locator('#cluster .node[data-node="node3"]')).to_have_attribute("data-alive", "false")
    expect(page.locator("#cluster .link.down")).to_have_count(1)
    expect(page.locator("#banner")).to_contain_text("New leader: node2")
    expect(page.locator("#events li.failover").first).to_be_visible()
    expect(page.locator("#live-text")).to_have_text("live")
    if shot:
        page.wait_for_timeout(4000)  # let the chart show the dip and the recovery
        page.screenshot(path=shot)
        load.stopped.set()
        load.join(30)


def test_the_page_follows_when_its_node_loses_the_leadership(cluster, page):
    cluster.restart(2)  # node3 comes back, catches up, and takes over from node2 (page's node)
    expect(page.locator("#leader-name")).to_have_text("node3", timeout=20_000)
    expect(page.locator('#cluster .node[data-node="node2"]')).not_to_have_attribute("data-role", "leader")
    page.fill("#submit-task", "reverse_string abc")
    page.click("#submit-button")
    expect(page.locator("#submit-status")).to_contain_text("submitted ")
    task_id = page.locator("#submit-status").inner_text().split()[1]
    expect(page.locator("#detail-id")).to_have_text(task_id)  # the submitted task opens in the detail
    expect(page.locator("#detail dd .badge")).to_have_text("succeeded")
    expect(page.locator("#detail")).to_contain_text("cba")
