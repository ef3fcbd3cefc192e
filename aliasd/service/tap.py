"""``twistd aliasd``: command-line options and the assembly of the service.

Options read the configuration file, apply the command-line overrides and
load every zone file before anything starts. A mistake in the configuration
is reported as one line (``aliasd: aliasd.toml: ...``) and the process exits
non-zero; a zone file that does not load is that zone's problem only
(aliasd.service.broken): it is logged, and every other zone starts.
``makeService`` is the one place where the object graph is built.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dns.name
from twisted.application import internet
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from aliasd import __version__
from aliasd.answer.answers import QueryHandler
from aliasd.answer.status import StatusReporter
from aliasd.base import enumcache, store
from aliasd.base.access import TransferAccess, keyring_from
from aliasd.base.config import (
    ConfigError,
    Settings,
    ZoneSettings,
    load_settings,
    parse_endpoint,
    parse_ip,
    parse_zone_arg,
    with_command_line_zones,
)
from aliasd.base.lag import LagMonitor
from aliasd.base.state import StateDirCheck, StateDirError, StateStore
from aliasd.base.stats import Statistics
from aliasd.dnssec.keys import KeyFileError
from aliasd.listen.ratelimit import ResponseRateLimiter
from aliasd.listen.udpport import UDPServer
from aliasd.listen.transports import (
    DNSDatagramProtocol,
    DNSStreamFactory,
    StreamListener,
)
from aliasd.replicate.journaldb import JournalStore
from aliasd.replicate.notify import NotifySender, NotifyService
from aliasd.replicate.secondaries import SecondaryTable
from aliasd.resolve.resolution import AliasResolver
from aliasd.resolve.upstream import FailoverResolver, NoUpstream
from aliasd.service import logsetup, upgrade
from aliasd.service.authority import ZoneAuthority
from aliasd.service.broken import BrokenZones
from aliasd.service.control import (
    SOCKET_NAME,
    ControlFactory,
    Controller,
    ControlService,
)
from aliasd.service.keyroll import register_rollover_gauge, start_rollovers
from aliasd.service.reload import (
    CatalogMaker,
    Reloader,
    ReloadService,
    ZoneFiles,
    apply_journal_limits,
    make_signers,
    save_snapshot_in_thread,
    with_runtime_zones,
)
from aliasd.service.workers import WorkerPool
from aliasd.service.zonemanager import ZoneManager
from aliasd.update.dynamic import DynamicZones, FileSyncService
from aliasd.update.runtime import RuntimeZones
from aliasd.zones.snapshot import Snapshot
from aliasd.zones.zonefile import ZoneFileError, ZoneSource

if TYPE_CHECKING:
    from aliasd.listen.tls import ReloadableContext

log = Logger()


class Options(usage.Options):
    """Options of ``twistd aliasd``; each overrides the configuration file."""

    synopsis = "[options]"
    longdesc = (
        "Serve DNS zones authoritatively, flattening ALIAS records into the "
        "A/AAAA records of their targets."
    )
    optParameters = [
        ["config", "c", None, "Configuration file (TOML)."],
        ["port", "p", None, "Port for UDP and TCP (overrides [server] port).", int],
        ["state-dir", None, None, "Directory for state that survives restarts."],
    ]

    def __init__(self):
        super().__init__()
        self.listen: list[str] = []
        self.zones: list[ZoneSettings] = []
        self.resolvers = []
        self.settings: Settings | None = None
        self.sources: list[ZoneSource] = []
        self.state: StateStore | None = None
        self.tls_context: ReloadableContext | None = None
        self.files = ZoneFiles()  # kept for reloads: unchanged files are not parsed again
        self.catalog = CatalogMaker()
        self.journal_files: JournalStore | None = None
        self.dynamic: DynamicZones | None = None
        self.signers: dict = {}
        self.broken = BrokenZones()  # zones whose file failed to load (the Reloader's errors)
        self.held: list[dns.name.Name] = []  # broken, nothing to serve: SERVFAIL
        self.log_levels = None  # the [log] levels of twistd's observer (makeService)
        self.api_tls = None  # [api] TLS options (aliasd.service.api), checked at start
        self.runtime: RuntimeZones | None = None  # zones created at runtime (issue 22)
        self.zone_manager: ZoneManager | None = None  # what the HTTP API calls (makeService)

    def opt_listen(self, address: str) -> None:
        """Address to listen on, IPv4 or IPv6 (repeatable)."""
        try:
            self.listen.append(parse_ip(address))
        except ValueError:
            raise usage.UsageError(f"--listen: not an IP address: {address!r}") from None

    def opt_zone(self, spec: str) -> None:
        """Serve zone NAME from FILE, as NAME=FILE (repeatable)."""
        try:
            self.zones.append(parse_zone_arg(spec))
        except ValueError as e:
            raise usage.UsageError(f"--zone: {e}") from None

    def opt_resolver(self, spec: str) -> None:
        """Upstream resolver as ADDR[:PORT] or [V6]:PORT (repeatable)."""
        try:
            self.resolvers.append(parse_endpoint(spec, 53))
        except ValueError as e:
            raise usage.UsageError(f"--resolver: {e}") from None

    def postOptions(self) -> None:
        # What is imported lives as long as the process: frozen now, so that
        # the cyclic collector's passes from here on walk only what start-up
        # makes. Its full passes walked every imported object to free
        # nothing (a warm start of 10,000 zones: 0.27 -> 0.17 s collecting).
        # (Not paused while files are read: a broken file's parse leaves
        # cyclic garbage, about 1 MiB per 1,000-record file.)
        gc.freeze()
        if self["config"]:
            self["config"] = str(Path(self["config"]).resolve())
        try:
            self.settings = self.load_settings()
            # The store first, with its configured size limit: whoever opens
            # it first sets the limit for the process (aliasd.base.db).
            self.state = StateStore(self.settings.server.state_dir, state_store_size(self.settings))
            self.files.snapshot = Snapshot(self.settings.server.state_dir)
            started = time.monotonic()
            results, _ = self.files.read_all(self.settings.zones, workers=os.cpu_count() or 1)
            log.info("zone files read in {seconds:.2f} s: {how}",
                     seconds=time.monotonic() - started, how=self.files.summary())
            self.journal_files = JournalStore(self.state.db)
            upgrade.import_files(self.settings.server.state_dir, self.state, self.journal_files)
            self.dynamic = DynamicZones(self.journal_files, self.settings.zones)
            self._runtime_zones()
            was_dynamic = self.journal_files.dynamic_keys()
            for zone in self.settings.zones:
                if isinstance(results[zone.name], ZoneFileError):  # that zone's problem only
                    results[zone.name] = self.broken.failed(zone, results[zone.name], self.files, self.dynamic)
                    if results[zone.name] is None:
                        self.held.append(zone.name)
                        del results[zone.name]
                elif zone.dynamic:  # its truth from the store, a hand edit of its file merged in
                    results[zone.name] = self.dynamic.start_source(
                        results[zone.name], self.files.digest_of(zone.name)
                    )
                elif results[zone.name].key in was_dynamic:  # rules removed while stopped
                    results[zone.name] = self.dynamic.start_static(
                        results[zone.name], self.files.digest_of(zone.name)
                    )
            self.sources = self.catalog.add_to(self.settings, list(results.values()) + self._runtime_sources(),
                                               self.held)
            self.signers = make_signers(with_runtime_zones(self.settings, self.runtime))
            if self.settings.tls.enabled or self.settings.api.tls is not None:
                # pyOpenSSL and cryptography: imported only with TLS (start-up time)
                from aliasd.listen.tls import ReloadableContext, certificate_options
            if self.settings.tls.enabled:
                self.tls_context = ReloadableContext(
                    certificate_options(self.settings.tls, str(self.settings.path))
                )
            if self.settings.api.tls is not None:
                from aliasd.service.api import API_ALPN  # twisted.web: only with [api] (start-up time)

                self.api_tls = certificate_options(
                    self.settings.api.tls, str(self.settings.path), keys="[api] tls-", protocols=API_ALPN)
        except (ConfigError, ZoneFileError, StateDirError) as e:
            sys.exit(f"aliasd: {e}")
        except KeyFileError as e:
            sys.exit(f"aliasd: DNSSEC keys: {e}")
        except OSError as e:  # the journal of a dynamic zone, the DNSSEC keys
            sys.exit(f"aliasd: state directory: {e}")

    def _runtime_zones(self) -> None:
        """The zones created at runtime (aliasd.update.runtime). One that is
        configured now is the configuration's: its records in the store go,
        so that the configured zone starts from its file alone."""
        self.runtime = RuntimeZones(self.state.db)
        self.catalog.generations = self.runtime.generations
        self.catalog.generation_of = self.runtime.generation_of
        configured = {z.name for z in self.settings.transferable_zones}
        for name in sorted(set(self.runtime.zones) & configured):
            log.error("zone {zone} was created at runtime and is configured now: the configured zone is "
                      "served from its file; the records created at runtime are dropped", zone=name.to_text())
            self.runtime.forget(name)
            self.journal_files.remove(store.key_of(name))

    def _runtime_sources(self) -> list[ZoneSource]:
        """The zones created at runtime, each its journal's truth."""
        self.dynamic.configure(with_runtime_zones(self.settings, self.runtime).zones)
        sources = []
        for name in sorted(self.runtime.zones):
            source = self.dynamic.stored_source(name, Path(f"<runtime zone {name.to_text()}>"))
            if source is None:  # its creation never finished: never acknowledged either
                log.info("zone {zone}: its creation did not finish before the last stop; it is dropped",
                         zone=name.to_text())
                self.runtime.forget(name)
                continue
            sources.append(source)
        return sources

    def load_settings(self) -> Settings:
        """The configuration file (read again on every call) with the
        command-line overrides applied; raises ConfigError."""
        settings = self._settings()
        if not settings.zones and not settings.api.enabled:  # with the API, zones may come at runtime
            raise ConfigError("no zones to serve: use [zones] or --zone NAME=FILE (or [api] to create them)")
        return settings

    def _settings(self) -> Settings:
        settings = load_settings(self["config"]) if self["config"] else Settings()
        server = settings.server
        if self.listen:
            server = dataclasses.replace(server, listen=tuple(self.listen))
        if self["port"] is not None:
            if not 0 <= self["port"] < 65536:
                raise ConfigError(f"--port: must be between 0 and 65535, got {self['port']}")
            server = dataclasses.replace(server, port=self["port"])
        if self["state-dir"]:
            server = dataclasses.replace(server, state_dir=Path(self["state-dir"]))
        resolver = settings.resolver
        if self.resolvers:
            resolver = dataclasses.replace(resolver, upstreams=tuple(self.resolvers))
        settings = dataclasses.replace(settings, server=server, resolver=resolver)
        return dataclasses.replace(settings, zones=with_command_line_zones(settings, self.zones))


#: The interpreter's thread switch interval while aliasd runs (see makeService).
SWITCH_INTERVAL = 0.001

#: Seconds between checks for signatures due for refreshing.
SIGNATURE_CHECK_INTERVAL = 60.0


def state_store_size(settings: Settings) -> int:
    """The state store's size limit: the IXFR histories' bound and room
    for the rest (serials, dynamic zones' snapshots, the target cache)."""
    return settings.server.journal_db_max_size + 1024**3


def make_upstream(upstreams, reactor):
    """The upstream client for a list of endpoints (none: every lookup fails)."""
    return FailoverResolver(upstreams, reactor) if upstreams else NoUpstream()


#: The modules through which importing Twisted's reactor imports pyOpenSSL,
#: cryptography and service_identity: startTLS on TCP connections
#: (twisted.internet.tcp) and listenSSL/connectSSL (twisted.internet.posixbase),
#: which aliasd never calls (its TLS wraps plain TCP ports: aliasd.listen.tls).
REACTOR_TLS_MODULES = ("twisted.internet._newtls", "twisted.internet.ssl", "twisted.protocols.tls")


def import_reactor(tls: bool):
    """twistd's default reactor. Without TLS configured it is imported as on
    a system without pyOpenSSL (Twisted's optional ``tls`` extra, which it
    looks for with an ImportError), so that they are not imported for
    nothing in the main process and every worker. A reactor already
    imported (``twistd --reactor``) is kept as it is."""
    if tls or "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        return reactor
    hidden = [name for name in REACTOR_TLS_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # (the import system's "not installed")
    try:
        from twisted.internet import reactor
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]  # (importable as usual from now on)
    return reactor


def makeService(options: Options) -> logsetup.LoggingService:
    """Assemble listeners, authority, resolver, NOTIFY, reload and statistics."""
    settings = options.settings
    reactor = import_reactor(settings.tls.enabled or settings.api.tls is not None)
    served = with_runtime_zones(settings, options.runtime)  # the configured zones and those created at runtime
    # Work that grows with the zones runs in threads (recording versions,
    # signing). A thread computing in Python holds the GIL for up to the
    # switch interval each time the reactor gives it up for a system call,
    # and the reactor gives it up several times per query: at the default
    # 5 ms, answers queue behind it ("convoy"). 1 ms keeps queries flowing.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # twistd's log observer, filtered by [log] (reloads change the levels).
    options.log_levels = logsetup.levels(settings.log)
    top = logsetup.LoggingService(getattr(options, "parent", None), options.log_levels)
    StateDirCheck(options.state).setServiceParent(top)  # first: runs before anything writes
    stats = Statistics()
    keyring = keyring_from(settings.keys)
    timeout = settings.resolver.timeout
    resolver = AliasResolver(
        make_upstream(settings.resolver.upstreams, reactor),
        reactor,
        min_refresh=settings.resolver.min_refresh,
        max_refresh=settings.resolver.max_refresh,
        serve_stale=settings.resolver.serve_stale,
        query_timeout=(timeout, timeout * 2),
        max_in_flight=settings.resolver.max_in_flight,
        min_ttl=settings.resolver.min_ttl,
        require_validated=settings.resolver.require_validated,
        state=options.state,
        stats=stats,
    )
    zones = served.transferable_zones
    notifier = NotifySender(
        reactor,
        {z.name: z.notify for z in zones},
        {z.name: keyring[dns.name.from_text(z.transfer_key)] for z in zones if z.transfer_key},
        stats=stats,
        rate=settings.server.notify_rate,
    )
    secondaries = SecondaryTable(reactor, notifier.retry_span)

    def new_serial(version):
        secondaries.served(version.origin, version.serial)
        notifier.zone_changed(version)

    authority = ZoneAuthority(
        resolver,
        state=options.state,
        on_new_serial=new_serial,
        clock=reactor,
        serial_interval=settings.server.serial_interval,
        serial_burst=settings.server.serial_burst,
        journal_files=options.journal_files,
        snapshot_frames=options.dynamic.snapshot_frames,
        signers=options.signers,
    )
    apply_journal_limits(authority, served)
    resolver.on_change = authority.rebuild
    load_zones(authority, options.sources, reactor, options.held)
    handler = QueryHandler(
        authority,
        settings.server.max_udp_size,
        access=TransferAccess(zones),
        keyring=keyring,
        status=StatusReporter(authority, resolver, reactor, settings.server.version),
        stats=stats,
        answer_cache_size=settings.server.answer_cache_size,
        update_rules={z.name: z.update for z in served.zones if z.update},
    )
    handler.updates.max_records = {z.name: z.max_records for z in served.zones if z.max_records}
    handler.transfers.secondaries = secondaries
    handler.updates.frozen = options.dynamic.frozen
    tcp_factory = DNSStreamFactory(
        handler,
        settings.server.tcp_idle_timeout,
        settings.server.tcp_max_connections,
        settings.server.tcp_max_per_client,
    )
    limiter = ResponseRateLimiter(settings.rate_limit, stats=stats) if settings.rate_limit.enabled else None
    udp_protocols, tcp_listeners = [], []
    for address in settings.server.listen:
        port = settings.server.port
        udp = DNSDatagramProtocol(handler, limiter)
        udp_protocols.append(udp)
        UDPServer(port, udp, interface=address, reactor=reactor).setServiceParent(top)
        tcp_listeners.append(StreamListener(reactor, port, tcp_factory, interface=address))
        tcp_listeners[-1].setServiceParent(top)
    # Worker processes answer UDP and TCP once the zones are loaded (after the listeners: they share their sockets).
    workers = WorkerPool(settings.server.worker_count, reactor, authority, udp_protocols, stats,
                         limiter=limiter, status=handler.status, logging=top,
                         tcp_listeners=tcp_listeners, tcp_factory=tcp_factory)
    workers.setServiceParent(top)
    tls = settings.tls
    if options.tls_context is not None:
        from aliasd.listen.tls import LimitedTLSFactory  # (imported with the context)

        for address in tls.listen:
            tls_factory = LimitedTLSFactory(options.tls_context, False, tcp_factory)
            internet.TCPServer(tls.port, tls_factory, interface=address).setServiceParent(top)
    resolver.setServiceParent(top)
    enumcache.service().setServiceParent(top)
    lag = LagMonitor(reactor)
    lag.setServiceParent(top)
    NotifyService(
        notifier, reactor, lambda: list(authority.versions.values()),
        sources=settings.server.notify_source, listen=settings.server.listen,
    ).setServiceParent(top)
    reloader = Reloader(
        options, authority, handler, notifier, resolver,
        lambda upstreams: make_upstream(upstreams, reactor), stats,
    )
    reloader.after_reload = workers.replace_all  # every setting reaches every worker
    ReloadService(reloader, reactor).setServiceParent(top)
    # Key rollovers of the zones under a dnssec-policy (aliasd.dnssec.rollover).
    rollovers = reloader.rollovers = start_rollovers(served, authority, options.state.db, reactor)
    # The parental agents' sockets and ds-submit-command's retries end with the server.
    rollovers.parent.setServiceParent(top)
    options.zone_manager = ZoneManager.in_threads(
        reactor, authority, reloader, options.runtime, options.dynamic, notifier, options.state)
    options.zone_manager.rollovers = rollovers
    controller = Controller(
        reactor, settings=settings, authority=authority, reloader=reloader, notifier=notifier,
        resolver=resolver, dynamic=options.dynamic, secondaries=secondaries, state=options.state,
        journal_files=options.journal_files, rollovers=rollovers,
    )
    controller.workers = workers
    ControlService(settings.server.state_dir / SOCKET_NAME, ControlFactory(controller), reactor).setServiceParent(top)
    if settings.api.enabled:  # the HTTP API (issue 22)
        from aliasd.service.api import ApiService  # twisted.web: imported only with [api] (start-up time)

        api = ApiService(settings.api, options.zone_manager, reactor, tls_options=options.api_tls,
                         catalog=settings.catalog.name.to_text() if settings.catalog else "")
        api.setServiceParent(top)
        reloader.api = api.resource
    FileSyncService(options.dynamic, authority, reactor, settings.server.dynamic_file_sync).setServiceParent(top)
    if options.signers:  # signatures refreshed when a zone's epoch moves on (aliasd.dnssec.signer.window)
        periods = [settings.dnssec.period] + [p.signing.period for p in settings.policies]
        every = min(SIGNATURE_CHECK_INTERVAL, min(periods) / 4)
        internet.TimerService(every, authority.refresh_signatures).setServiceParent(top)
    # What start-up parsed goes into the snapshot once the server runs, in
    # a thread (a reload, also in a thread, waits: the pool has one for it).
    # Workers fork once it is written (its entries, freed after a fork, would
    # leave a copy of their pages in every worker).
    saved = defer.Deferred()
    reactor.callWhenRunning(lambda: save_snapshot_in_thread(reactor, options.files).chainDeferred(saved))
    workers.fork_after.append(saved)
    reactor.callWhenRunning(
        log.info,
        "aliasd {version} started: {zones} zones ({broken} with a broken file), DNS on {listen} port {port}, "
        "TLS {tls}, rate limit {rrl}, upstreams {upstreams}, state in {state}, statistics {stats}",
        version=__version__,
        zones=len(options.sources) + len(options.held),
        broken=len(options.broken.errors),
        listen=", ".join(settings.server.listen),
        port=settings.server.port,
        tls=f"on {', '.join(tls.listen)} port {tls.port}" if tls.enabled else "off",
        rrl=f"{settings.rate_limit.responses_per_second}/s per answer" if limiter else "off",
        upstreams=", ".join(str(u) for u in settings.resolver.upstreams) or "(none)",
        state=str(settings.server.state_dir),
        stats=str(settings.statistics.listen) if settings.statistics.listen else "off",
    )
    if settings.api.enabled:
        reactor.callWhenRunning(log.info, "HTTP API on {listen} ({tls}), {keys} keys",
                                listen=", ".join(str(e) for e in settings.api.listen),
                                tls="TLS" if options.api_tls is not None else "plain HTTP",
                                keys=len(settings.api.keys))
    if settings.statistics.listen is not None:
        _register_gauges(stats, authority, resolver, lag, secondaries, options.broken)
        _register_store(stats, options.state.db, authority, reactor)
        register_rollover_gauge(stats, rollovers)
        endpoint = settings.statistics.listen
        from aliasd.base.metricsite import MetricsSite  # twisted.web: only with [statistics] listen

        internet.TCPServer(endpoint.port, MetricsSite(stats), interface=endpoint.host).setServiceParent(top)
    return top


#: From this many zones on, the server answers while its zones are loaded
#: (each zone as soon as its first version is served; SERVFAIL before).
BACKGROUND_LOAD_FROM = 1000


def load_zones(authority: ZoneAuthority, sources: list[ZoneSource], reactor, held=()) -> None:
    """Serve the zones read at start: before the reactor runs when they are
    few, else in slices once it runs, so the server answers from the start."""
    started = time.monotonic()

    def loaded(_=None):
        log.info("{zones} zones loaded and served in {seconds:.2f} s",
                 zones=len(authority.versions), seconds=time.monotonic() - started)
        # The zones loaded at start live as long as the process: keep the
        # cyclic collector from walking them again and again.
        gc.freeze()

    # A big signed zone takes seconds to sign: the others are served meanwhile.
    heavy = any(
        source.origin in authority.signers and len(source.records) >= authority.heavy_from for source in sources
    )
    if len(sources) < BACKGROUND_LOAD_FROM and not heavy:
        authority.set_sources(sources, wait=True, held=held)
        gc.collect()
        loaded()
        return
    # The sources and settings live as long as the process: out of the
    # collector's sight before the slices start, or its full collections
    # walk them while zones load (0.35 s at 10,000 zones).
    gc.collect()
    gc.freeze()
    authority.set_sources(sources, held=held)
    authority.when_idle().addCallback(loaded)


def _zone_serials(authority: ZoneAuthority) -> list:
    """Each zone's serial for the statistics page, sorted by the names'
    text: sorting a thousand Names compares them label by label in Python
    (60 ms of the reactor at every scrape), their text in C."""
    serials = sorted((o.to_text(), v.serial) for o, v in list(authority.versions.items()))
    return [({"zone": text}, serial) for text, serial in serials]


def _register_gauges(stats: Statistics, authority: ZoneAuthority, resolver: AliasResolver, lag,
                     secondaries: SecondaryTable, broken: BrokenZones) -> None:
    stats.gauge("aliasd_reactor_lag_seconds_max", "Longest time the reactor was held up since start.",
                lambda: [({}, round(lag.max_lag, 6))])
    stats.gauge("aliasd_reactor_stalls", "Times the reactor was held up for 0.1 s or more.",
                lambda: [({}, lag.stalls)])
    stats.gauge("aliasd_gc_pause_seconds_max", "Longest garbage collection since start.",
                lambda: [({}, round(lag.max_gc_pause, 6))])
    stats.gauge(
        "aliasd_zone_serial",
        "The serial each zone serves now.",
        lambda: _zone_serials(authority),
    )
    stats.gauge(
        "aliasd_journal_versions",
        "Differences kept for IXFR, all zones together.",
        lambda: [({}, sum(len(j) for j in authority.journals.values()))],
    )
    stats.gauge(
        "aliasd_zones",
        "Zones served.",
        lambda: [({}, len(authority.versions))],
    )

    stats.gauge(
        "aliasd_zones_broken",
        "Zones whose file failed to load at the last attempt.",
        lambda: [({}, len(broken.errors))],
    )
    stats.gauge(
        "aliasd_zones_stale",
        "Zones whose file is broken, serving older data from the store.",
        lambda: [({}, len(broken.stale))],
    )

    def targets():
        counts = collections.Counter(s.status.value for s in resolver.targets.values())
        counts["in-zone"] = len(authority.graph.local)  # answered from zones served here
        return [({"status": status}, counts.get(status, 0)) for status in sorted(TARGET_STATUSES)]

    stats.gauge("aliasd_alias_targets",
                "ALIAS targets (name and address type), by state; in-zone: in a zone served here.", targets)
    stats.gauge(
        "aliasd_secondaries_behind",
        "Secondaries (by transfer source and TSIG key) on an older serial for longer than NOTIFY's retries.",
        lambda: [({}, secondaries.behind())],
    )


#: The states of aliasd_alias_targets: the resolver's, and targets in served zones.
TARGET_STATUSES = ("pending", "resolved", "no-addresses", "stale", "expired", "in-zone")


def _register_store(stats: Statistics, db, authority: ZoneAuthority, clock) -> None:
    """The state store's room and failed writes, and the signatures' time left."""
    stats.gauge("aliasd_store_bytes_used", "Octets of the state store in use (its pages up to the highest).",
                lambda: [({}, db.usage()[0])])
    stats.gauge("aliasd_store_bytes_limit", "The state store's size limit in octets.",
                lambda: [({}, db.usage()[1])])
    stats.counter("aliasd_store_commit_failures_total",
                  "Writes to the state store that failed (full disk, size limit); each is retried.",
                  lambda: db.commit_failures)

    def expiry():
        expires = [v.signed.expires for v in authority.versions.values() if v.signed is not None]
        return [({}, round(min(expires) - clock.seconds()))] if expires else []

    stats.gauge("aliasd_signature_expiry_seconds",
                "Seconds until the earliest RRSIG served in any signed zone expires.", expiry)
