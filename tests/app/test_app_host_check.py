"""Issue 12 item 9: the dashboard and demo servers answer only requests addressed to this machine
(``Host`` localhost, 127.0.0.1 or [::1]); any other name is refused even with the token, so a page
of another site whose name is pointed at 127.0.0.1 (DNS rebinding) gets nothing of ours."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

from fourd_widgets.app.demo import DEMO_SAMPLE, VOILA_TEMPLATE, free_port

from .app_helpers import DemoProcess

LOCAL = ["127.0.0.1", "localhost", "[::1]"]  # browsers send host names in lower case
FOREIGN = ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.1", ""]


def _get(port: int, path: str, host: str, token: str | None = None,
         extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Host": f"{host}:{port}" if host else "", **(extra or {})}
    if token is not None:
        headers["Authorization"] = f"token {token}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        # A websocket handshake (101) leaves the connection open: read no body then.
        body = b"" if response.status == 101 else response.read()
        return response.status, body
    finally:
        conn.close()


def _status(port: int, path: str, host: str, token: str | None = None,
            extra: dict[str, str] | None = None) -> int:
    return _get(port, path, host, token, extra)[0]


def test_dashboard_refuses_other_host_names_even_with_the_token(dashboard) -> None:
    token, port = dashboard.token, dashboard.port
    page, api = f"/?token={token}", f"/api/kernels?token={token}"
    for host in LOCAL:
        assert _status(port, page, host) == 200, host
    for host in FOREIGN:
        # Before: 200 for every Host header (Voila turns Jupyter's host check off).
        assert _status(port, page, host) == 403, host
        assert _status(port, api, host, token) == 403, host
        assert _status(port, "/voila/labextensions/anywidget/package.json", host) == 403, host
    assert _status(port, "/voila/labextensions/anywidget/package.json", "localhost") == 200


def test_lab_demo_refuses_other_host_names_even_with_the_token(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / f"{DEMO_SAMPLE}.h5").write_bytes(b"")  # kept as it is: no sample is simulated
    lab = DemoProcess(folder, free_port(), "--lab")
    try:
        for host in LOCAL:
            assert _status(lab.port, f"/api/status?token={lab.token}", host) == 200, host
        for host in FOREIGN:
            assert _status(lab.port, f"/api/status?token={lab.token}", host) == 403, host
            assert _status(lab.port, "/lab/tree/tour.ipynb", host, lab.token) == 403, host
    finally:
        lab.stop()
        lab.remove_log()


#: Headers of a websocket handshake (the kernel's channels), as a browser sends them.
WEBSOCKET = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_dashboard_refuses_other_host_names_on_static_files_and_kernels(dashboard) -> None:
    # Before: Voila's static handlers (its JavaScript, the template's CSS) answered 200 to any Host,
    # outside Jupyter's check; now every path is refused before any handler runs.
    token, port = dashboard.token, dashboard.port
    status, page = _get(port, f"/?token={token}", "127.0.0.1")
    assert status == 200
    kernel = re.search(rb'"kernelId": "([0-9a-f-]{36})"', page)  # the kernel Voila started for this page
    assert kernel is not None, page[:2000]
    kernel_path = f"/api/kernels/{kernel.group(1).decode()}"
    paths = {
        "page": (f"/?token={token}", None, None),
        "Voila's static file": ("/voila/static/voila.js", None, None),
        "the template's static file": (f"/voila/templates/{VOILA_TEMPLATE}/static/index.css", None, None),
        "the kernel API": (kernel_path, token, None),
        "the kernel's websocket": (f"{kernel_path}/channels?token={token}", None, WEBSOCKET),
        "the login page": ("/login", None, None),
    }
    refusals = []
    for what, (path, auth, extra) in paths.items():
        expected = 101 if extra is WEBSOCKET else 200
        for host in LOCAL:
            assert _status(port, path, host, auth, extra) == expected, (what, host)
        for host in FOREIGN:
            status, body = _get(port, path, host, auth, extra)
            assert status == 403, (what, host)
            refusals.append((what, host, body))
    for what, host, body in refusals:
        # Nothing of ours either: not even an error page that tells the caller Voila runs here.
        assert b"voila" not in body.lower(), (what, host)
