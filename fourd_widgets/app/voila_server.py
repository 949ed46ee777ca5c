"""Voila that answers only requests addressed to this machine (``python -m fourd_widgets.app.voila_server``).

Takes Voila's own command line. Every request whose ``Host`` header is not
this machine (:data:`LOCAL_HOST_NAMES`, with or without a port) gets 403
before any of Voila's handlers runs: the notebook page, the kernels and their
websockets, the API, the front-end extensions, and also the static files
(the template's CSS, Voila's JavaScript), which Voila serves with Tornado's
plain handlers and so outside Jupyter's own ``Host`` check. A web page of
another site whose name an attacker points at 127.0.0.1 (DNS rebinding) so
gets nothing from the dashboard, not even a file that tells it Voila runs here.

The check is the first rule of the Tornado application's router
(:func:`refuse_foreign_hosts`), so it covers every path, including ones a
later Voila version adds.
"""

from __future__ import annotations

from typing import Any

import tornado.httputil
import tornado.routing
import tornado.web
from voila.app import Voila

__all__ = ["LOCAL_HOST_NAMES", "is_local_host", "ForeignHostRefused", "refuse_foreign_hosts", "LocalVoila", "main"]

#: The ``Host`` names of this machine (lower case; an IPv6 address without its brackets).
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_local_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine (:data:`LOCAL_HOST_NAMES`, any port).

    Parameters
    ----------
    host : str or None
        The header's value; None when the request has none.

    Examples
    --------
    >>> [is_local_host(h) for h in ("127.0.0.1:8866", "LOCALHOST", "[::1]:80", "[::1]")]
    [True, True, True, True]
    >>> [is_local_host(h) for h in ("evil.example", "127.0.0.1.evil.example", "localhost:x", "", None)]
    [False, False, False, False, False]
    """
    if not host:
        return False
    name, _ = tornado.httputil.split_host_and_port(host.lower())
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name in LOCAL_HOST_NAMES


class _ForeignHost(tornado.routing.Matcher):
    """Matches a request whose ``Host`` header is missing or not this machine."""

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return None if is_local_host(request.headers.get("Host")) else {}


class ForeignHostRefused(tornado.web.RequestHandler):
    """Answers 403 to any request, with a short plain-text reason."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("403: this server answers only requests addressed to localhost or 127.0.0.1\n")


def refuse_foreign_hosts(app: tornado.web.Application) -> None:
    """Make ``app`` answer 403 (:class:`ForeignHostRefused`) to every request not addressed to this machine.

    The rule goes first in the application's router, before the handlers
    already added, so no handler of ``app`` sees such a request.

    Examples
    --------
    >>> import tornado.httputil, tornado.web
    >>> app = tornado.web.Application([(r"/.*", tornado.web.RequestHandler)])
    >>> refuse_foreign_hosts(app)
    >>> def handler_for(host):
    ...     start = tornado.httputil.RequestStartLine("GET", "/static/x.css", "HTTP/1.1")
    ...     request = tornado.httputil.HTTPServerRequest(
    ...         start_line=start, headers=tornado.httputil.HTTPHeaders({"Host": host}))
    ...     return app.find_handler(request).handler_class.__name__
    >>> handler_for("evil.example:8866"), handler_for("127.0.0.1:8866")
    ('ForeignHostRefused', 'RequestHandler')
    """
    app.default_router.rules.insert(0, tornado.routing.Rule(_ForeignHost(), ForeignHostRefused))


class LocalVoila(Voila):
    """Voila whose server refuses (403) requests not addressed to this machine (:func:`refuse_foreign_hosts`).

    Reads the same configuration as Voila (the ``Voila`` section applies).
    """

    def listen(self) -> None:
        # Voila.start builds self.app, adds its handlers, then calls listen():
        # the last moment before the first request can arrive.
        refuse_foreign_hosts(self.app)
        super().listen()


def main(argv: list[str] | None = None) -> None:
    """Run :class:`LocalVoila` with Voila's command line (``argv``; default: ``sys.argv[1:]``)."""
    LocalVoila.launch_instance(argv)


if __name__ == "__main__":
    main()
