"""``/metrics`` over HTTP (twisted.web) for ``[statistics] listen``.

A module of its own so that twisted.web (about 30 ms of imports at every
start) is imported only by a server that serves statistics.
"""

from __future__ import annotations

from twisted.web import pages, resource, server

from aliasd.base.stats import Statistics


class _Metrics(resource.Resource):
    isLeaf = True

    def __init__(self, statistics: Statistics):
        super().__init__()
        self.statistics = statistics

    def render_GET(self, request):
        if self.statistics.refresh is None:
            return self._body(request)

        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(_):
            if not gone:
                request.write(self._body(request))
                request.finish()

        self.statistics.refresh().addCallback(write)
        return server.NOT_DONE_YET

    def _body(self, request) -> bytes:
        accept = request.getHeader(b"accept")
        body, content_type = self.statistics.render(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class _Root(resource.Resource):
    def getChild(self, path, request):
        return pages.notFound()


class MetricsSite(server.Site):
    """``/metrics`` only; no access log line per scrape."""

    noisy = False

    def __init__(self, statistics: Statistics):
        statistics.registry  # imports prometheus_client now, not at the first scrape
        root = _Root()
        root.putChild(b"metrics", _Metrics(statistics))
        super().__init__(root)

    def log(self, request) -> None:
        pass
