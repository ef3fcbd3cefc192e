"""Reload on SIGHUP: re-read the configuration and every zone file, no gap.

Everything is read and checked first, in a thread; then what changed is
handed to the authority, which builds and serves new versions in slices
between queries, so every query is answered, from the old data or the new.
Only files that changed are parsed again (ZoneFiles: size and mtime, then
a digest of the content), and only their zones get new versions. SIGHUPs
that arrive during a reload make one more reload after it, never two at
once, so the last file contents always win. A configuration that
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

import dataclasses
import hashlib
import os
import signal
from pathlib import Path

import dns.name
from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger

from aliasd.access import TransferAccess, keyring_from
from aliasd.authority import ZoneAuthority
from aliasd.catalog import catalog_source
from aliasd.config import ConfigError, ZoneSettings
from aliasd.zonefile import ZoneFileError, ZoneSource, load_zone_file

log = Logger()


def load_zone(zone: ZoneSettings) -> ZoneSource:
    """Load one configured zone; the error names the zone, file and line."""
    try:
        return load_zone_file(zone.name, zone.file)
    except ZoneFileError as e:
        raise ZoneFileError(f"zone {zone.name}: {e}") from None


@dataclasses.dataclass
class _Read:
    path: Path
    size: int
    mtime_ns: int
    digest: bytes
    includes: bool  # $INCLUDE: other files may have changed, always parse
    source: ZoneSource


class ZoneFiles:
    """Zone files as last read, so that unchanged files are not parsed again.

    A file whose size and modification time are unchanged is taken as it
    was; otherwise its content digest decides. A file with ``$INCLUDE`` is
    always parsed (the included files are not tracked). One caller at a
    time: start-up, then the reload thread (reloads never overlap).
    """

    def __init__(self):
        self._read: dict[dns.name.Name, _Read] = {}
        self.parsed = 0  # files parsed by the last read_all

    def load(self, zone: ZoneSettings) -> ZoneSource:
        """The zone's source: the same object as before if its file is unchanged."""
        path = zone.file
        known = self._read.get(zone.name)
        try:
            st = os.stat(path)
        except OSError:
            return load_zone(zone)  # names the file and the reason
        if known is not None and known.path == path and not known.includes and (
            known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return known.source
        try:
            data = path.read_bytes()
        except OSError:
            return load_zone(zone)
        digest = hashlib.sha256(data).digest()
        includes = b"$include" in data.lower()
        if known is not None and known.path == path and not includes and known.digest == digest:
            known.size, known.mtime_ns = st.st_size, st.st_mtime_ns
            return known.source
        source = load_zone(zone)
        self.parsed += 1
        self._read[zone.name] = _Read(path, st.st_size, st.st_mtime_ns, digest, includes, source)
        return source

    def read_all(self, zones) -> tuple[dict, list[ZoneSource]]:
        """Every zone's source or the ZoneFileError that stops it, and the
        sources parsed anew; forgets the files of zones no longer configured."""
        before = {name: read.source for name, read in self._read.items()}
        self.parsed = 0
        results = {}
        for zone in zones:
            try:
                results[zone.name] = self.load(zone)
            except ZoneFileError as e:
                results[zone.name] = e
        for name in set(self._read) - set(results):
            del self._read[name]
        fresh = [
            r for name, r in results.items()
            if not isinstance(r, ZoneFileError) and before.get(name) is not r
        ]
        return results, fresh


class CatalogMaker:
    """Adds the catalog zone (aliasd.catalog) to the served sources.

    The catalog source is rebuilt only when its name or members changed, so
    an unchanged catalog keeps its version, serial and IXFR history.
    """

    def __init__(self):
        self._key = None
        self._source: ZoneSource | None = None

    def add_to(self, settings, sources: list[ZoneSource]) -> list[ZoneSource]:
        if settings.catalog is None:
            return sources
        key = (settings.catalog.name, frozenset(s.origin for s in sources))
        if key != self._key:
            self._key = key
            self._source = catalog_source(key[0], sorted(key[1]))
        return sources + [self._source]


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
        self.files = getattr(options, "files", None) or ZoneFiles()
        self.catalog = getattr(options, "catalog", None) or CatalogMaker()
        self._running: defer.Deferred | None = None
        self._again = False

    def reload(self) -> defer.Deferred:
        """Reload; fires with True when everything was read without error
        and the new versions are served.

        Files are parsed (and indexed) in a thread, so queries go on being
        answered; the authority then builds the new versions in slices. A
        reload asked for while one runs happens once, after it.
        """
        if self._running is not None:
            if not self._again:
                log.info("reload: one is in progress; another will follow it")
            self._again = True
            return self._running
        self._running = d = self._reload_once()
        d.addBoth(self._finished)
        return d

    def _finished(self, result):
        self._running = None
        if self._again:
            self._again = False
            self.reload()
        return result

    def _reload_once(self) -> defer.Deferred:
        """Read the configuration (listing the zone directory: ten thousand
        files take a second) and the changed zone files in a thread."""
        log.info("reload: reading the configuration and zone files")
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._read)
        d.addCallback(self._read_done)
        d.addErrback(self._crashed)
        return d

    def _read(self):
        """(settings, what _read_zones found), or the ConfigError (in a thread)."""
        try:
            settings = self.options.load_settings()
        except ConfigError as e:
            return e, None
        return settings, _read_zones(settings, self.files)

    def _read_done(self, read):
        settings, loaded = read
        if isinstance(settings, ConfigError):
            log.error("reload failed, nothing changed: {error}", error=str(settings))
            self._count("failed")
            return False
        return self._apply(loaded, settings)

    def _apply(self, loaded, settings) -> defer.Deferred:
        """Hand what was read to the authority (reactor thread)."""
        results, prepared, parsed = loaded
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
        sources = self.catalog.add_to(settings, sources)
        old = set(self.authority.sources)
        new = {s.origin for s in sources}
        self.handler.access = TransferAccess(settings.transferable_zones)
        keyring = keyring_from(settings.keys)
        self.handler.keyring = keyring
        self.notifier.targets = {z.name: z.notify for z in settings.transferable_zones}
        self.notifier.keys = {
            z.name: keyring[dns.name.from_text(z.transfer_key)]
            for z in settings.transferable_zones
            if z.transfer_key
        }
        self._apply_resolver(settings)
        tls_context = getattr(self.options, "tls_context", None)
        if tls_context is not None and settings.tls.enabled and tls_context.reload(settings.tls, str(settings.path)):
            log.info("reload: TLS certificate {path} loaded", path=str(settings.tls.certificate))
        self.authority.set_sources(sources, prepared)
        self.settings = settings

        def done(_):
            if self.authority.waiting_for_state:
                log.error("reload: the new versions wait for the state directory (see above); "
                          "they are served once their serials are recorded")
            log.info(
                "reload done: {zones} zones ({added} added, {removed} removed, {parsed} file(s) "
                "read again), {errors} error(s)",
                zones=len(new), added=len(new - old), removed=len(old - new), parsed=parsed,
                errors=errors,
            )
            self._count("ok" if errors == 0 else "partial")
            return errors == 0

        return self.authority.when_idle().addCallback(done)

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


def _read_zones(settings, files: ZoneFiles):
    """Parse and index the zone files that changed (runs in a thread)."""
    results, fresh = files.read_all(settings.zones)
    return results, ZoneAuthority.prepare(fresh), files.parsed


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
