"""docs/DEPLOY.md's nginx site, as written there, in front of two gunicorn "hosts": the live banner
in Chromium over HTTP/2, forms with CSRF, the WebSocket fallback, and streams through a release.

The site block is read from the guide itself (the fenced block that starts with
`# /etc/nginx/sites-available/weighin`), so the guide cannot drift from what is tested. Only the
lines the guide marks `# CHANGE` (upstream hosts, server_name, certificate paths) and the two
listen ports (free ports here, so parallel runs and a non-root user work) are replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from ..support import ROOT, free_port, stop_process_group, unavailable, wait_for_port
from .harness import guide_block, scan_later

SITE_MARKER = "# /etc/nginx/sites-available/weighin"
BANNER = "#reminder-area #reminder-banner"
# A standard EventSource beside the page's own hx-sse stream, logging what happens to it.
OPEN_EVENT_SOURCE = """() => {
    window.__log = [];
    window.__es = new EventSource('/events');
    __es.onopen = () => __log.push('open');
    __es.onerror = () => __log.push(`error:${__es.readyState}`);
    __es.onmessage = (event) => __log.push(event.data.includes('reminder-banner') ? 'banner' : 'area');
}"""


def localise(site: str, upstreams: list[str], cert: Path, key: Path, https_port: int, http_port: int) -> str:
    """Replace the guide's `# CHANGE` lines (and the listen ports); any other CHANGE line fails."""
    lines = []
    hosts = iter(upstreams)
    for line in site.splitlines():
        if "# CHANGE" in line:
            indent = line[: len(line) - len(line.lstrip())]
            code = line.split("#", 1)[0].strip()
            if code.startswith("server ") and code.endswith(";"):
                options = code.removesuffix(";").split()[2:]  # keep max_fails and the rest
                line = f"{indent}server {' '.join([next(hosts), *options])};"
            elif code.startswith("server_name "):
                line = f"{indent}server_name localhost;"
            elif code.startswith("ssl_certificate "):
                line = f"{indent}ssl_certificate {cert};"
            elif code.startswith("ssl_certificate_key "):
                line = f"{indent}ssl_certificate_key {key};"
            else:
                raise AssertionError(f"a line to change that the test does not know: {line!r}")
        lines.append(line)
    assert next(hosts, None) is None, "the guide's upstream has fewer host lines than the test's hosts"
    text = "\n".join(lines) + "\n"
    text, https = re.subn(r"^(\s*listen )443( ssl http2;)", rf"\g<1>{https_port}\2", text, flags=re.M)
    text, http = re.subn(r"^(\s*listen )80;", rf"\g<1>{http_port};", text, flags=re.M)
    assert (https, http) == (1, 1), "the guide's server blocks listen on 443 and 80 once each"
    return text


class Nginx:
    """Debian's nginx with a private prefix, pid, logs and temp folders, on free ports."""

    def __init__(self, folder: Path, site: str, https_port: int):
        self.folder = folder
        self.https_port = https_port
        self.url = f"https://localhost:{https_port}"
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / temp).mkdir()
            (folder / temp).chmod(0o777)  # run as root, the workers are "nobody"
        (folder / "site.conf").write_text(site)
        temps = "".join(f"    {name}_temp_path {folder / name};\n" for name in ("fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            f"pid {folder / 'nginx.pid'};\n"
            f"error_log {folder / 'error.log'} info;\n"
            "worker_processes 1;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    include /etc/nginx/mime.types;\n"
            "    log_format proto '$request_method $uri $status $server_protocol';\n"
            f"    access_log {folder / 'access.log'} proto;\n"
            f"    client_body_temp_path {folder / 'client_body'};\n"
            f"    proxy_temp_path {folder / 'proxy'};\n"
            f"{temps}"
            f"    include {folder / 'site.conf'};\n"
            "}\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        command = [binary, "-p", str(self.folder), "-e", str(self.folder / "error.log")]
        command += ["-c", str(self.folder / "nginx.conf"), "-g", "daemon off;"]
        check = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t refused the guide's site:\n{check.stderr}"
        self.proc = subprocess.Popen(command, start_new_session=True)
        wait_for_port(self.https_port, proc=self.proc)
        return self

    def stop(self) -> None:
        stop_process_group(self.proc, grace=5)

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _sign_up(page, url: str, email: str) -> None:
    """Sign up through the site's own form (a POST with its CSRF token) and land on the dashboard."""
    from playwright.sync_api import expect

    page.goto(f"{url}/account/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("correct horse battery")
    page.locator("#content form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))


@pytest.fixture
def nginx_site(pgbouncer, gunicorn):
    """Two gunicorn "hosts" (one worker each) behind the guide's nginx site, both on the test's
    database through the guide's PgBouncer."""
    if not os.path.exists(shutil.which("nginx") or "/usr/sbin/nginx"):
        unavailable("nginx is not installed (apt-get install nginx)")
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed (apt-get install openssl)")
    # As the guide's environment file has it: behind TLS and one proxy.
    hosts = [
        gunicorn(
            name,
            workers=1,
            DATABASE_URL=pgbouncer + "?prepare_threshold=none",
            PROXY_FIX=1,
            SESSION_COOKIE_SECURE=1,
            SSE_HEARTBEAT=2,
        )
        for name in ("host-a", "host-b")
    ]
    # Not under tmp_path: pytest's folders are private to this user, and nginx's workers are not.
    folder = Path(tempfile.mkdtemp(prefix="weighin-nginx-"))
    folder.chmod(0o755)
    cert, key = self_signed_certificate(folder)
    https_port, http_port = free_port(), free_port()
    site = localise(
        guide_block("nginx", SITE_MARKER),
        [f"127.0.0.1:{host.port}" for host in hosts],
        cert,
        key,
        https_port,
        http_port,
    )
    nginx = Nginx(folder, site, https_port).start()
    nginx.hosts = hosts
    nginx.http_port = http_port
    yield nginx
    nginx.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.services
@pytest.mark.browser
def test_live_banner_through_the_guides_nginx_over_http2(nginx_site, browser):
    from playwright.sync_api import expect

    site = nginx_site
    env = site.hosts[0].env
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    protocols: dict[str, set[str]] = {}
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on(
        "Network.responseReceived",
        lambda event: protocols.setdefault(event["response"]["url"].split("?")[0], set()).add(
            event["response"].get("protocol", "")
        ),
    )
    try:
        # Sign up: a POST with its CSRF token, through nginx on a non-default port.
        _sign_up(page, site.url, "ada@example.com")
        page.wait_for_function(
            "() => document.querySelector('#reminder-area')?._htmx?.sse?.status === 200", timeout=15_000
        )
        assert protocols.get(f"{site.url}/dashboard") == {"h2"}, protocols
        assert protocols.get(f"{site.url}/events") == {"h2"}, protocols

        # A reminder opened elsewhere arrives on the open page through nginx and Redis.
        expect(page.locator(BANNER)).to_have_count(0)
        scan_later(env)
        expect(page.locator(BANNER)).to_be_visible()

        # Logging a weight (htmx's POST with the X-CSRFToken header) ends it, live.
        form = page.locator("#quick-add")
        form.get_by_label("Weight").fill("80")
        form.get_by_role("button", name="Log weight").click()
        expect(page.locator("#dashboard-live [role=status]")).to_have_text("Logged 80.0 kg.")
        expect(page.locator(BANNER)).to_have_count(0)

        # The WebSocket fallback gets through the Upgrade (its first frame is the snapshot: no banner now).
        first_frame = page.evaluate(
            """() => new Promise((resolve, reject) => {
                const ws = new WebSocket(`wss://${location.host}/events/ws`);
                ws.onmessage = (event) => { resolve(event.data); ws.close(); };
                ws.onclose = (event) => reject(new Error(`closed with ${event.code}`));
            })"""
        )
        assert 'data-reminder-state="none"' in json.loads(first_frame)["html"], first_frame[:300]

        # Plain HTTP is sent to HTTPS.
        plain = httpx.get(f"http://localhost:{site.http_port}/dashboard", timeout=10)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://localhost")
    finally:
        context.close()
    assert "[emerg]" not in site.log() and "[crit]" not in site.log(), site.log()[-2000:]


@pytest.mark.services
@pytest.mark.browser
def test_a_large_import_upload_reaches_the_app_through_the_guides_nginx(nginx_site, browser):
    """Past nginx's default 1 MiB body cap: the app itself answers a 3 MB import file."""
    from playwright.sync_api import expect

    site = nginx_site
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _sign_up(page, site.url, "cy@example.com")
        page.goto(f"{site.url}/entries/import")
        # One line far longer than any format allows: the app's own message, not nginx's 413.
        big = b"date,weight\n" + b"1" * 3_000_000 + b"\n"
        page.get_by_label("CSV file").set_input_files(
            {"name": "big.csv", "mimeType": "text/csv", "buffer": big}
        )
        page.get_by_role("button", name="Show what will be imported").click()
        expect(page.locator("#import-error")).to_be_visible()
    finally:
        context.close()


@pytest.mark.services
@pytest.mark.browser
def test_streams_come_back_through_a_release(nginx_site, browser):
    """One host stopped: the page's stream reconnects to the other. Every host stopped: nginx
    answers /events with an empty stream and a retry, so even a standard EventSource keeps
    trying (on a 502 it would give up for good) and opens again once a host is back."""

    site = nginx_site
    host_a, host_b = site.hosts
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _sign_up(page, site.url, "bo@example.com")
        page.evaluate(OPEN_EVENT_SOURCE)
        page.wait_for_function("() => __log.includes('open')")

        host_a.stop()  # one host released: pages and forms carry on through the other
        response = page.goto(f"{site.url}/dashboard")
        assert response is not None and response.status == 200
        page.evaluate(OPEN_EVENT_SOURCE)
        page.wait_for_function("() => __log.includes('open')")

        host_b.stop()  # nothing answers: a full stop
        page.wait_for_function("() => __log.filter((entry) => entry.startsWith('error')).length >= 2")
        with httpx.Client(verify=False, timeout=10) as client:
            answer = client.get(f"{site.url}/events")
        assert answer.status_code == 200, answer.status_code
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert "retry: 2000" in answer.text

        page.evaluate("() => { window.__log = []; }")
        host_a.start()
        page.wait_for_function("() => __log.includes('open')", timeout=30_000)
        log = page.evaluate("() => __log")
        assert "error:2" not in log, log  # never CLOSED: the client kept trying
        scan_later(host_a.env)
        page.wait_for_function("() => __log.includes('banner')")
    finally:
        context.close()


@pytest.mark.parametrize(
    ("edited", "debian_files", "expected"),
    [
        (
            "/etc/nginx/nginx.conf",
            ["/etc/nginx/nginx.conf"],
            ["\tworker_connections 20000;", "worker_rlimit_nofile 65536;"],
        ),
        (
            "/etc/postgresql/15/main/postgresql.conf",
            ["/etc/postgresql/15/main/postgresql.conf", "/usr/share/postgresql/15/postgresql.conf.sample"],
            ["listen_addresses = '*'"],
        ),
        ("/etc/redis/redis.conf", ["/etc/redis/redis.conf"], ["bind 0.0.0.0 -::"]),
    ],
)
def test_the_guides_sed_commands_change_debians_files(tmp_path, edited, debian_files, expected):
    """Each `sed -i` of docs/DEPLOY.md, run on a copy of the Debian 12 file it edits, changes the
    line it means to (a pattern that no longer matches would change nothing, silently)."""
    original = next((Path(path) for path in debian_files if Path(path).exists()), None)
    if original is None:
        unavailable(f"none of {debian_files} here (Debian's nginx, postgresql-15, redis-server)")
    guide = (ROOT / "docs" / "DEPLOY.md").read_text()
    commands = [line for line in re.findall(r"^sed -i .*$", guide, flags=re.M) if line.endswith(" " + edited)]
    assert commands, f"no sed command for {edited} in the guide"
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    for command in commands:
        subprocess.run(["sh", "-c", command.removesuffix(edited) + str(copy)], check=True, timeout=30)
    lines = copy.read_text().splitlines()
    for line in expected:
        assert any(text.startswith(line) for text in lines), f"{line!r} not in the edited {edited}"
    if original.name == "nginx.conf":  # the directive must sit in the main context, before events
        assert lines.index("worker_rlimit_nofile 65536;") < lines.index("events {")
