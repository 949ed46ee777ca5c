"""Issue 12 item 9: the dashboard and demo servers answer only requests addressed to this machine
(``Host`` localhost, 127.0.0.1 or [::1]); any other name is refused even with the token, so a page
of another site whose name is pointed at 127.0.0.1 (DNS rebinding) gets nothing of ours."""

from __future__ import annotations

import http.client
from pathlib import Path

from fourd_widgets.app.demo import DEMO_SAMPLE, free_port

from .app_helpers import DemoProcess

LOCAL = ["127.0.0.1", "localhost", "[::1]"]  # browsers send host names in lower case
FOREIGN = ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.1", ""]


def _status(port: int, path: str, host: str, token: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Host": f"{host}:{port}" if host else ""}
    if token is not None:
        headers["Authorization"] = f"token {token}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


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
