"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), against a
real server seeded with sessions in every state and activity, from several hosts and
components, some carrying XSS probes. Screenshots go to artifacts/dashboard/."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import start_payload
from mcp_helpers import free_port, http_server, mint_token
from session_buddy.app.service import SessionService
from session_buddy.core import SessionLifecycleManager
from session_buddy.timestamps import format_micros, now_micros

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "dashboard"
SECRET = "dashboard-secret-0123456789abcdefghijklmnop"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the dashboard tests")
    pytest.skip("needs Debian's chromium (apt install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


class ProbeCatcher(http.server.BaseHTTPRequestHandler):
    """Counts any request at all: an XSS probe that ran would call here."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        ProbeCatcher.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def probe() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProbeCatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def seed(url: str, probe: str) -> dict[str, str]:
    """Sessions in every state and activity, on three hosts, four components; probes in
    metadata, cwd, end reasons and host names. Returns a few ids by role."""
    xss = f'<script>fetch("{probe}/script")</script><img src="{probe}/img" onerror="alert(1)">'
    ids: dict[str, str] = {}
    server_clock = [now_micros()]
    async with SessionLifecycleManager(
        url, abandon_after=1, clock=lambda: server_clock[0]
    ) as reaper:
        ids["abandoned"] = str((await SessionService(reaper).start(start_payload())).session_id)
        server_clock[0] += 2_000_000  # silent for longer than abandon_after
        await reaper.reap()  # abandoned, with evidence
    now = now_micros()
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        for number in range(24):
            started = format_micros(now - (number + 1) * 1_800_000_000)
            component = ("web", "worker", "backup", "claude-code")[number % 4]
            event = start_payload(
                component_name=component,
                hostname=f"host-{number % 3}" if number != 5 else f'evil"><b>{xss}',
                timestamp=started,
                pid=6000 + number,
                metadata={"note": xss} if number == 2 else {},
            )
            event["environment"]["cwd"] = f"/srv/{xss}" if number == 4 else "/srv/app"
            session_id = str((await service.start(event)).session_id)
            ids.setdefault(component, session_id)
            if number % 6 == 0:
                continue  # stays active
            code = 139 if number % 5 == 0 else 0
            ended = format_micros(now - (number + 1) * 1_800_000_000 + (60 + number * 40) * 10**6)
            reason = xss if number == 7 else "exit"
            metadata = {"exit_code": code, "exit_reason": reason}
            await service.end({"session_id": session_id, "timestamp": ended, "metadata": metadata})
        activities = [
            ("waiting_for_input", "cl-wait"),
            ("working", "cl-work"),
            ("failing", "cl-fail"),
        ]
        for activity, claude_id in activities:
            event = start_payload(
                component_name="claude-code",
                hostname="laptop",
                timestamp=format_micros(now - 60_000_000),
                pid=None,
                metadata={"external_id": claude_id},
            )
            ids[claude_id] = str((await service.start(event)).session_id)
            detail = "rate_limit" if activity == "failing" else None
            await manager.heartbeat(
                None, None, activity=activity, external_id=claude_id, detail=detail
            )
    return ids


def in_a_thread(work: Any) -> Any:
    """Run a coroutine to its end on a thread of its own (Playwright's sync API keeps an
    event loop running on this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, probe: str
) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'dashboard.db'}"
    ids = in_a_thread(seed(url, probe))
    with http_server(url) as (base, _):
        yield base, ids


def watched(browser: Browser, **options: Any) -> tuple[Page, list[str]]:
    """A page whose dialogs and console errors are recorded."""
    page = browser.new_page(**options)
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: seen.append(f"error: {error}"))
    return page, seen


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_overview_shows_each_section(
    browser: Browser, site: tuple[str, dict[str, str]]
) -> None:
    base, ids = site
    page, seen = watched(browser, viewport={"width": 1280, "height": 800})
    page.goto(f"{base}/")
    for section in ("now", "ends", "components"):
        assert page.locator(f"#{section}").is_visible()
        page.locator(f"#{section}").screenshot(path=str(ARTIFACTS / f"section-{section}.png"))
    first = page.locator("#now tbody tr").first
    assert ids["cl-wait"] in first.inner_text() and "waiting for input" in first.inner_text()
    failing = page.locator("#now tbody tr", has_text=ids["cl-fail"])
    assert "failing rate_limit" in " ".join(failing.inner_text().split())
    assert page.locator("#ends .state-crashed").count() >= 1
    assert page.locator("#components .charts:not(.small) svg.chart").count() == 2
    assert page.locator("#components .charts.small svg.chart").count() == 4  # one a component
    assert page.locator("#components svg rect.state-crashed").count() >= 1
    assert "crash-free" in page.locator("#components").inner_text()
    for row in page.locator("#now tbody tr a.sid").all():
        assert row.get_attribute("href") == f"/sessions/{row.inner_text()}"
    shoot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "overview-phone")
    assert seen == []


def test_xss_probes_are_inert(
    browser: Browser, site: tuple[str, dict[str, str]], probe: str
) -> None:
    base, ids = site
    ProbeCatcher.hits.clear()
    page, seen = watched(browser)
    for path in ("/", "/sessions", f"/sessions/{ids['backup']}", "/sessions?hostname=x"):
        page.goto(f"{base}{path}")
        page.wait_for_timeout(300)
    page.goto(f"{base}/sessions")
    assert "<script>" in page.locator("#list").inner_text()  # shown as text
    assert seen == [] and ProbeCatcher.hits == []
    headers = page.request.get(f"{base}/").headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_filters_change_rows_and_url(browser: Browser, site: tuple[str, dict[str, str]]) -> None:
    base, _ = site
    page, seen = watched(browser)
    page.goto(f"{base}/sessions")
    page.fill("input[name=component_name]", "worker")
    page.select_option("select[name=status]", "ended")
    page.click("form.filters button")
    page.wait_for_url("**/sessions?*component_name=worker*")
    assert "status=ended" in page.url
    rows = page.locator("#list tbody tr")
    assert rows.count() >= 1
    for row in rows.all():
        text = row.inner_text()
        assert "worker" in text and "ended" in text
    shoot(page, "sessions-filtered")
    page.goto(f"{base}/?window=7d&hostname=host-1")
    assert page.locator("select[name=window]").input_value() == "7d"
    assert page.locator("input[name=hostname]").input_value() == "host-1"
    day = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%d")
    page.goto(f"{base}/?started_after={day}T00:00:00Z")  # a custom window
    assert page.locator("input[name=started_after]").input_value() == f"{day}T00:00:00Z"
    assert f"since {day} 00:00Z" in page.locator("#components h2").inner_text()
    too_long = page.goto(f"{base}/?started_after=2000-01-01T00:00:00Z")  # a page reads a month
    assert too_long is not None and too_long.status == 400
    assert "at most 31 days" in page.locator("[role=alert]").inner_text()
    assert seen == []


def test_detail_shows_fields_event_log_and_links(
    browser: Browser, site: tuple[str, dict[str, str]]
) -> None:
    base, ids = site
    page, seen = watched(browser)
    page.goto(f"{base}/sessions")
    page.click(f"a.sid:text-is('{ids['worker']}')")
    page.wait_for_url(f"**/sessions/{ids['worker']}")
    log = page.locator("ol.events li")
    assert log.count() == 2
    assert "session_start" in log.nth(0).inner_text() and "session_end" in log.nth(1).inner_text()
    assert '"component_name": "worker"' in log.nth(0).locator("pre").inner_text()
    assert "hostname" in page.locator("dl.fields").inner_text()
    shoot(page, "detail")
    page.goto(f"{base}/sessions/no-such-session")
    assert "No session" in page.locator("#detail").inner_text()
    assert seen == []


def test_tables_work_without_javascript(browser: Browser, site: tuple[str, dict[str, str]]) -> None:
    base, _ = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{base}/sessions?status=active")
    assert page.locator("#list tbody tr").count() >= 3
    page.goto(f"{base}/")
    assert page.locator("#now tbody tr").count() >= 3
    context.close()


def test_the_page_refreshes_itself_keeping_filters(
    browser: Browser, site: tuple[str, dict[str, str]]
) -> None:
    base, _ = site
    page, seen = watched(browser)
    page.goto(f"{base}/sessions?status=active")
    page.evaluate("document.getElementById('list').dataset.marker = 'old'")
    marker = "document.getElementById('list').dataset.marker || 'fresh'"
    for _ in range(60):  # the CSP forbids wait_for_function's eval: poll from here
        if page.evaluate(marker) != "old":
            break
        page.wait_for_timeout(200)
    assert page.evaluate(marker) == "fresh"  # the section was replaced by a newer one
    assert page.url.endswith("/sessions?status=active")
    assert seen == []


def test_a_login_stays_across_tabs_and_browser_restarts_until_logout(
    browser: Browser, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'secured.db'}"
    in_a_thread(seed(url, "http://127.0.0.1:9"))
    reader = mint_token(url, SECRET, "sessions:read")
    writer = mint_token(url, SECRET, "sessions:write")
    log = tmp_path / "server.log"
    with http_server(url, log=log, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        context = browser.new_context()
        page = context.new_page()
        answer = page.goto(f"{base}/sessions?status=ended")
        assert answer is not None and answer.status == 401
        assert page.locator("#token").is_visible() and page.locator("#list").count() == 0
        assert "--ttl 2592000" in page.locator("#locked pre").inner_text()
        assert page.locator("#refresh").is_hidden()  # nothing live while locked
        shoot(page, "locked")
        for given, said in (
            ("not.a.token", "That is not a session-buddy token"),
            (writer, "That token may not read sessions (it has sessions:write)"),
        ):
            page.fill("#token", given)
            page.click("#token-form button")
            assert said in page.locator("#locked .error").inner_text()
        page.fill("#token", reader)
        page.click("#token-form button")
        page.wait_for_selector("#list tbody tr")
        assert page.url == f"{base}/sessions?status=ended"  # back where it was asked
        [cookie] = context.cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
        assert cookie["expires"] > datetime.now(UTC).timestamp() + 3000
        assert page.evaluate("document.cookie") == ""  # no script can read the login
        stored = "JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage)])"
        assert reader not in page.evaluate(stored)

        tab = context.new_page()  # another tab, a bookmark: no question asked
        assert (tab.goto(f"{base}/sessions") or answer).status == 200
        state = tmp_path / "browser-state.json"
        context.storage_state(path=str(state))
        context.close()
        restarted = browser.new_context(storage_state=str(state))
        again = restarted.new_page()
        assert (again.goto(f"{base}/") or answer).status == 200
        again.click("form.logout button")
        again.wait_for_selector("#token")
        assert (again.goto(f"{base}/") or answer).status == 401
        restarted.close()
    assert reader not in log.read_text() and writer not in log.read_text()


FORGED = """<!doctype html><html><body>
<form id="forged" method="post" action="{target}"><input name="csrf" value="guess"></form>
<script>document.getElementById("forged").submit();</script></body></html>"""


def test_a_forged_cross_site_post_is_refused(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'forged.db'}"
    reader = mint_token(url, SECRET, "sessions:read")
    with http_server(url, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{base}/")
        page.fill("#token", reader)
        page.click("#token-form button")
        page.wait_for_selector("#now")
        for target in ("logout", "login"):
            evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _serving(FORGED, base, target))
            threading.Thread(target=evil.serve_forever, daemon=True).start()
            try:
                attack = context.new_page()
                with attack.expect_response(f"{base}/{target}") as answered:
                    attack.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
                assert answered.value.status == 403
            finally:
                evil.shutdown()
        assert (page.goto(f"{base}/") or page).status == 200  # still logged in
        context.close()


def _serving(template: str, base: str, target: str) -> type[http.server.BaseHTTPRequestHandler]:
    body = template.format(target=f"{base}/{target}").encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Evil


async def waiting_session(url: str, claude_id: str) -> str:
    """A Claude Code session that waits for input now."""
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        event = start_payload(
            component_name="claude-code", pid=None, timestamp=format_micros(now_micros())
        )
        event["metadata"] = {"external_id": claude_id}
        session_id = str((await service.start(event)).session_id)
        await manager.heartbeat(None, None, activity="waiting_for_input", external_id=claude_id)
        return session_id


# The browser's Notification API, recording what the page shows (headless Chromium has
# no notification centre to look at).
RECORD_NOTIFICATIONS = """
window.shownNotifications = [];
window.Notification = class {
  constructor(title, options) { window.shownNotifications.push([title, options.body]); }
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


def test_the_title_counts_who_needs_you_and_notifies_when_asked(
    browser: Browser, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    first = in_a_thread(waiting_session(url, "first"))
    with http_server(url) as (base, _):
        context = browser.new_context()
        context.add_init_script(RECORD_NOTIFICATIONS)
        page = context.new_page()
        page.goto(f"{base}/sessions")
        assert page.title() == "(1) session-buddy: sessions"
        assert page.locator("#needs-you").inner_text() == "1 needs you"
        assert page.locator("#notify").inner_text() == "Notify me"
        page.locator("#notify").click()
        assert page.locator("#notify").inner_text() == "Notifications on"
        second = in_a_thread(waiting_session(url, "second"))
        for _ in range(60):  # the page refreshes every 5 s
            if page.evaluate("window.shownNotifications.length"):
                break
            page.wait_for_timeout(200)
        [[title, body]] = page.evaluate("window.shownNotifications")
        assert title == "session-buddy: 1 session needs you" and body == second
        assert page.title() == "(2) session-buddy: sessions"
        assert page.locator("#needs-you").inner_text() == "2 need you"
        assert first not in body  # told once, when it began to wait
        context.close()


NGINX_CONF = """
daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location /sb/ {{
      proxy_pass http://127.0.0.1:{upstream}/;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Prefix /sb;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


@contextmanager
def nginx(folder: Path, upstream: str) -> Iterator[str]:
    """A real nginx serving the server at `upstream` under /sb/; yields its /sb URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            raise RuntimeError("CI must install nginx for the sub-path test")
        pytest.skip("needs nginx (apt install nginx)")
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(folder=folder, port=port, upstream=upstream.rsplit(":", 1)[1])
    )
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(folder)])
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/sb"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_behind_nginx_under_a_sub_path_assets_load_and_login_works(
    browser: Browser, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'proxied.db'}"
    in_a_thread(seed(url, "http://127.0.0.1:9"))
    reader = mint_token(url, SECRET, "sessions:read")
    with http_server(url, SESSION_BUDDY_SECRET=SECRET) as (base, _), nginx(tmp_path, base) as sb:
        context = browser.new_context()
        page = context.new_page()
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        page.goto(f"{sb}/")
        assert page.locator("#token").is_visible()
        color = page.evaluate("getComputedStyle(document.querySelector('header')).display")
        assert color == "flex"  # the stylesheet came, from /sb/static/
        page.fill("#token", reader)
        page.click("#token-form button")
        page.wait_for_selector("#now")
        assert page.url == f"{sb}/"
        [cookie] = context.cookies()
        assert cookie["path"] == "/sb"
        page.click("nav a:has-text('Sessions')")
        page.wait_for_selector("#list tbody tr")
        assert page.url == f"{sb}/sessions"
        page.click("#list tbody tr a.sid >> nth=0")
        page.wait_for_selector("#detail")
        assert page.url.startswith(f"{sb}/sessions/")
        page.click("form.logout button")
        page.wait_for_selector("#token")
        assert page.url == f"{sb}/"
        assert missing == []
        context.close()


AXE = Path(__file__).resolve().parent.parent / ".cache" / "axe" / "node_modules" / "axe-core"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def _pages(ids: dict[str, str]) -> dict[str, str]:
    return {"overview": "/", "sessions": "/sessions", "detail": f"/sessions/{ids['backup']}"}


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_fits_its_screen_in_both_themes(
    browser: Browser, site: tuple[str, dict[str, str]], size: str, theme: str
) -> None:
    base, ids = site
    context = browser.new_context(viewport=SIZES[size], color_scheme=theme)  # type: ignore[arg-type]
    page = context.new_page()
    for name, path in _pages(ids).items():
        page.goto(f"{base}{path}")
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{name} scrolls sideways by {wide} px at {size}"
        shoot(page, f"{name}-{size}-{theme}")
    page.goto(f"{base}/")
    height = SIZES[size]["height"]
    first = page.locator("#now tbody tr").first
    for label in ("state", "activity", "component", "running for"):
        cell = first.locator(f'td[data-label="{label}"]')
        if cell.count():
            box = cell.bounding_box()
            assert box is not None and box["y"] + box["height"] <= height, label
    page.goto(f"{base}/sessions")
    row = page.locator("#list tbody tr").first
    for label in ("state", "activity", "component"):
        box = row.locator(f'td[data-label="{label}"]').bounding_box()
        assert box is not None and box["y"] + box["height"] <= height, label
    context.close()


def test_charts_have_a_legend_and_leave_an_empty_hour_empty(
    browser: Browser, site: tuple[str, dict[str, str]]
) -> None:
    base, _ = site
    page = browser.new_page(viewport=SIZES["desktop"])
    page.goto(f"{base}/")
    assert page.locator("#components .legend li").all_inner_texts() == [
        "ended",
        "crashed",
        "abandoned",
        "active",
    ]
    chart = page.locator("#components .charts:not(.small) svg.chart").first
    # The seeded sessions started in the last 12.5 hours: the first hours of the 24-hour
    # window are there, empty, so the first bar stands well right of the axis.
    first_bar = min(
        float(x) for x in chart.locator("rect").evaluate_all("r => r.map(e => e.getAttribute('x'))")
    )
    assert first_bar > 480 * 0.4
    ticks = chart.locator("text.tick").evaluate_all("t => t.map(e => e.textContent)")
    assert len(ticks) >= 4 and all(len(t) == 5 for t in ticks[2:])  # "HH:00" labels
    label_size = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('#components svg text.tick')).fontSize)"
    )
    page.set_viewport_size(SIZES["phone"])
    scale = chart.bounding_box()["width"] / 480  # type: ignore[index]
    assert label_size * scale >= 9  # readable on a phone: ~10 px
    page.close()


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is installed by `make browser` (npm)")
@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_no_serious_accessibility_violations(
    browser: Browser, site: tuple[str, dict[str, str]], size: str, theme: str
) -> None:
    """axe-core run in the page (the test's context sets the CSP aside to load it)."""
    base, ids = site
    context = browser.new_context(
        viewport=SIZES[size],
        color_scheme=theme,  # type: ignore[arg-type]
        bypass_csp=True,
    )
    page = context.new_page()
    found = {}
    for name, path in _pages(ids).items():
        page.goto(f"{base}{path}")
        page.add_script_tag(path=str(AXE / "axe.min.js"))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if bad:
            found[name] = bad
    context.close()
    assert found == {}


def test_tables_sort_from_the_keyboard(browser: Browser, site: tuple[str, dict[str, str]]) -> None:
    base, _ = site
    page = browser.new_page(viewport=SIZES["desktop"])
    page.goto(f"{base}/sessions")
    header = page.locator("#list th", has_text="component")
    header.focus()
    page.keyboard.press("Enter")
    assert header.get_attribute("aria-sort") == "ascending"
    names = page.locator('#list td[data-label="component"]').all_inner_texts()
    assert names == sorted(names, key=str.lower)
    page.keyboard.press(" ")
    assert header.get_attribute("aria-sort") == "descending"
    page.close()


def test_an_expired_token_is_named_as_such(browser: Browser, tmp_path: Path) -> None:
    import jwt

    url = f"sqlite:///{tmp_path / 'expired.db'}"
    claims = {"aud": "session-buddy", "sub": "me", "scope": "sessions:read", "exp": 1}
    expired = jwt.encode(claims, SECRET, algorithm="HS256")
    with http_server(url, SESSION_BUDDY_SECRET=SECRET) as (base, _):
        page = browser.new_page()
        page.goto(f"{base}/")
        page.fill("#token", expired)
        page.click("#token-form button")
        assert "That token has expired" in page.locator("#locked .error").inner_text()
        page.close()


async def family(url: str) -> dict[str, str]:
    """A Claude Code session with a subagent, ended and resumed: ids by role."""
    async with SessionLifecycleManager(url) as manager:
        service = SessionService(manager)
        now = now_micros()

        async def start(at: int, **metadata: str) -> str:
            event = start_payload(component_name="claude-code", timestamp=format_micros(at))
            event["metadata"] = metadata
            return str((await service.start(event)).session_id)

        first = await start(now - 60_000_000, external_id="claude-1")
        agent = await start(now - 50_000_000, external_id="agent-1", parent_external_id="claude-1")
        await service.end({"session_id": agent, "timestamp": format_micros(now - 40_000_000)})
        await service.end({"session_id": first, "timestamp": format_micros(now - 30_000_000)})
        resumed = await start(now - 20_000_000, external_id="claude-1")
        return {"first": first, "agent": agent, "resumed": resumed}


def test_links_go_both_ways(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'family.db'}"
    ids = in_a_thread(family(url))
    with http_server(url) as (base, _):
        page = browser.new_page()
        page.goto(f"{base}/sessions/{ids['first']}")
        links = page.locator("#detail ul.links")
        assert links.nth(0).locator("a.sid").inner_text() == ids["resumed"]  # continued by
        assert links.nth(1).locator("a.sid").inner_text() == ids["agent"]  # its subagent
        page.click(f"a.sid:has-text('{ids['agent']}')")
        page.wait_for_url(f"**/sessions/{ids['agent']}")
        page.click(f"a.sid:has-text('{ids['first']}')")  # and back to its parent
        page.wait_for_url(f"**/sessions/{ids['first']}")
        page.close()
