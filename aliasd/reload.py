"""Reload on SIGHUP: re-read the configuration and every zone file, no gap.

Everything is read and checked first; then what changed is swapped in by
assignments between two queries (the reactor is single-threaded), so every
query is answered, from the old data or the new. A configuration that
cannot be read changes nothing. A zone file that cannot be read is logged
with file, line and reason, and that zone keeps serving its previous
version (a new zone with a broken file is not served until fixed). Added
zones start serving, removed zones stop, changed zones get a new version
whose serial follows the usual rules, and their secondaries are notified.

Settings that need new sockets (listen addresses, port, state directory,
statistics and TLS listeners) are only reported: they take effect at the
next start. A TLS certificate and key are read again, so a renewed
certificate is served to new connections (the key file must then be
readable by the user aliasd runs as).
"""

from __future__ import annotations

import signal

import dns.name
from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger

from aliasd.access import TransferAccess, keyring_from
from aliasd.authority import ZoneAuthority
from aliasd.config import ConfigError, ZoneSettings
from aliasd.zonefile import ZoneFileError, ZoneSource, load_zone_file

log = Logger()


def load_zone(zone: ZoneSettings) -> ZoneSource:
    """Load one configured zone; the error names the zone, file and line."""
    try:
        return load_zone_file(zone.name, zone.file)
    except ZoneFileError as e:
        raise ZoneFileError(f"zone {zone.name}: {e}") from None


class Reloader:
    """Applies a fresh configuration to the running objects."""

    def __init__(self, options, authority, handler, notifier, resolver, make_upstream, stats=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.options = options
        self.stats = stats
        self.authority = authority
        self.handler = handler
        self.notifier = notifier
        self.resolver = resolver
        self.make_upstream = make_upstream
        self.settings = options.settings

    def reload(self) -> defer.Deferred:
        """Reload; fires with True when everything was read without error.

        Files are parsed (and indexed) in a thread, so queries go on being
        answered; the results are swapped in from the reactor thread.
        """
        log.info("reload: reading the configuration and zone files")
        try:
            settings = self.options.load_settings()
        except ConfigError as e:
            log.error("reload failed, nothing changed: {error}", error=str(e))
            self._count("failed")
            return defer.succeed(False)
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _read_zones, settings)
        d.addCallback(self._apply, settings)
        d.addErrback(self._crashed)
        return d

    def _apply(self, loaded, settings) -> bool:
        """Swap in what was read (reactor thread)."""
        results, prepared = loaded
        sources, errors = [], 0
        for zone in settings.zones:
            result = results[zone.name]
            if not isinstance(result, ZoneFileError):
                sources.append(result)
                continue
            errors += 1
            previous = self.authority.sources.get(zone.name)
            if previous is not None:
                sources.append(previous)
                log.error("reload: {error}; zone {zone} keeps serving its previous data",
                          error=str(result), zone=zone.name.to_text())
            else:
                log.error("reload: {error}; new zone {zone} is not served",
                          error=str(result), zone=zone.name.to_text())
        self._warn_restart_needed(settings)
        old = set(self.authority.sources)
        new = {s.origin for s in sources}
        self.handler.access = TransferAccess(settings.zones)
        keyring = keyring_from(settings.keys)
        self.handler.keyring = keyring
        self.notifier.targets = {z.name: z.notify for z in settings.zones}
        self.notifier.keys = {
            z.name: keyring[dns.name.from_text(z.transfer_key)]
            for z in settings.zones
            if z.transfer_key
        }
        self._apply_resolver(settings)
        tls_context = getattr(self.options, "tls_context", None)
        if tls_context is not None and settings.tls.enabled and tls_context.reload(settings.tls, str(settings.path)):
            log.info("reload: TLS certificate {path} loaded", path=str(settings.tls.certificate))
        self.authority.set_sources(sources, prepared)
        self.settings = settings
        log.info(
            "reload done: {zones} zones ({added} added, {removed} removed), {errors} error(s)",
            zones=len(new), added=len(new - old), removed=len(old - new), errors=errors,
        )
        self._count("ok" if errors == 0 else "partial")
        return errors == 0

    def _crashed(self, failure) -> bool:
        log.failure("reload failed, nothing changed", failure)
        self._count("failed")
        return False

    def _count(self, result: str) -> None:
        if self.stats is not None:
            self.stats.inc("aliasd_reloads_total", result=result)

    def _apply_resolver(self, settings) -> None:
        r, new = self.resolver, settings.resolver
        r.min_refresh, r.max_refresh, r.serve_stale = new.min_refresh, new.max_refresh, new.serve_stale
        r.query_timeout = (new.timeout, new.timeout * 2)
        r.max_in_flight = new.max_in_flight
        if new.upstreams != self.settings.resolver.upstreams:
            old = r.upstream
            r.upstream = self.make_upstream(new.upstreams)
            close = getattr(old, "close", None)
            if close is not None:
                close()
            log.info("reload: upstream resolvers now {upstreams}",
                     upstreams=", ".join(str(u) for u in new.upstreams) or "(none)")

    def _warn_restart_needed(self, settings) -> None:
        before, after = self.settings, settings
        for what, old, new in (
            ("[server] listen", before.server.listen, after.server.listen),
            ("[server] port", before.server.port, after.server.port),
            ("[server] state-dir", before.server.state_dir, after.server.state_dir),
            ("[statistics]", before.statistics, after.statistics),
            ("[rate-limit]", before.rate_limit, after.rate_limit),
            ("[tls] listen or port", (before.tls.enabled, before.tls.listen, before.tls.port),
             (after.tls.enabled, after.tls.listen, after.tls.port)),
        ):
            if old != new:
                log.warn("reload: {what} changed; it takes effect at the next restart", what=what)


def _read_zones(settings):
    """Parse and index every configured zone file (runs in a thread)."""
    results = {}
    for zone in settings.zones:
        try:
            results[zone.name] = load_zone(zone)
        except ZoneFileError as e:
            results[zone.name] = e
    good = [r for r in results.values() if not isinstance(r, ZoneFileError)]
    return results, ZoneAuthority.prepare(good)


class ReloadService(service.Service):
    """Turns SIGHUP into a reload, run in the reactor thread."""

    def __init__(self, reloader: Reloader, reactor):
        self.reloader = reloader
        self.reactor = reactor
        self._previous = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reloader.reload)

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
