"""A small DNSSEC world around aliasd, to prove that a signed child zone
validates at every moment, whatever its keys do.

- the parent zone ``test.`` is served by BIND ``named``, signed by its own
  ``dnssec-policy`` and open to dynamic updates from loopback;
- the child zone ``child.test.`` is served by aliasd (started by the test)
  with an apex ALIAS, and by a BIND secondary fed by aliasd's NOTIFY/IXFR;
- two Unbound validators are anchored at the parent's KSK: one asks aliasd
  for the child, the other the secondary. Glue carries no port, so Unbound
  is the one that knows where each zone lives (a ``stub-zone`` each);
- the :class:`Registrar` plays the registrar: the DS RRset at the parent
  follows the child's CDS (RFC 7344, RFC 8078), sent with ``nsupdate``;
- the :class:`Probe` asks both validators, with DO, every half second for
  the apex A and a name that does not exist, and records rcode and AD;
- the :class:`KeyWatch` follows the child's keys as aliasd serves them
  (DNSKEY, CDS, the keys that sign the SOA), and runs ``dnssec-verify`` on
  an AXFR of the child at each change and every few seconds.

Typical use, with the ``aliasd`` and ``upstream`` fixtures::

    world = DnssecWorld(tmp_path, upstream)
    server = aliasd(world.child_config("dnssec = true"), world.child_files(), server=SERVER)
    with world.running(server):
        world.wait(20)
        world.check(secure=True)
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype

from tests.aliasd_process import free_port
from tests.secondaries import Named
from tests.test_e2e_dnssec import ZONE, config
from tests.test_e2e_update import nsupdate
from tests.validators import NamedAuthority, Unbound, axfr_text, dnssec_verify

PARENT = dns.name.from_text("test.")
CHILD = dns.name.from_text("child.test.")
#: The apex ALIAS's target at the test upstream, and the addresses it rotates through.
TARGET = "lb.cdn.test."
POOL = [f"198.51.100.{i}" for i in range(1, 9)]
#: The name the probe asks for that does not exist.
MISSING = "nothing.child.test."

PARENT_ZONE = """\
$TTL 2
@ SOA ns.test. hostmaster.test. 1 60 60 600 1
@ NS ns
ns A 127.0.0.1
child NS ns1.child
ns1.child A 127.0.0.1
"""

#: The parent signs itself with one key that never rolls; short TTLs so that
#: a changed DS is seen at once (the DS TTL is the registrar's).
PARENT_POLICY = """\
dnssec-policy "parent" {
    keys { csk lifetime unlimited algorithm ecdsap256sha256; };
    dnskey-ttl 2; max-zone-ttl 10; publish-safety 0; retire-safety 0; zone-propagation-delay 0;
};
"""

#: test_e2e_dnssec's zone (an apex ALIAS, a wildcard, a delegation with
#: glue, empty non-terminals) as the child, every record living 2 seconds
#: (the signatures too): a validator's cache forgets in the time the
#: policies allow for.
CHILD_ZONE = ZONE.replace("example.test.", "child.test.").replace("$TTL 300", "$TTL 2").replace(" 60\n", " 2\n", 1)

#: Validators keep what the TTLs say (a few seconds, not capped at one), so
#: they hold cached keys and DS across each step of a rollover, as real
#: ones do; bogus answers and unreachable servers are forgotten at once.
VALIDATOR_CACHE = """\
cache-max-ttl: 30
cache-max-negative-ttl: 30
"""


def _ask(name, rdtype, port: int, timeout: float = 2, dnssec: bool = True) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
    return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)


def _rdatas(response: dns.message.Message, rdtype: int, owner: dns.name.Name) -> list:
    return [rd for rrset in response.answer if rrset.rdtype == rdtype and rrset.name == owner for rd in rrset]


# --------------------------------------------------------------------------
# The parent


class Parent(NamedAuthority):
    """BIND named serving ``test.``: signed by ``dnssec-policy``, the child
    delegated, DS records added and removed by dynamic update from loopback."""

    name = "parent"

    def start_parent(self) -> Parent:
        self.start(PARENT.to_text(), PARENT_ZONE, 'dnssec-policy "parent"; allow-update { 127.0.0.1; };',
                   PARENT_POLICY)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # named signs the zone a moment after it loads it
            if self.anchors() and self._signed_soa():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"named did not sign {PARENT}:\n{self.log()}")

    def _signed_soa(self) -> bool:
        return bool(_rdatas(_ask(PARENT, "SOA", self.port), dns.rdatatype.RRSIG, PARENT))

    def anchors(self) -> list[str]:
        """The parent's KSK as DNSKEY lines: the validators' trust anchor."""
        keys = _rdatas(_ask(PARENT, "DNSKEY", self.port), dns.rdatatype.DNSKEY, PARENT)
        return [f"{PARENT} 3600 IN DNSKEY {rd.to_text()}" for rd in keys if rd.flags & 1]

    def ds(self, child: dns.name.Name = CHILD) -> frozenset:
        """The DS rdatas the parent serves for ``child``."""
        return frozenset(_rdatas(_ask(child, "DS", self.port), dns.rdatatype.DS, child))

    def update_ds(self, add, delete, ttl: int, child: dns.name.Name = CHILD) -> None:
        lines = [f"update delete {child} {ttl} DS {rd.to_text()}" for rd in delete]
        lines += [f"update add {child} {ttl} DS {rd.to_text()}" for rd in add]
        rc, out = nsupdate(self.port, "\n".join(lines), key=None, zone=PARENT.to_text())
        if rc != 0:
            raise RuntimeError(f"nsupdate of the DS at the parent failed:\n{out}\n{self.log()[-2000:]}")


# --------------------------------------------------------------------------
# Threads that act on the world every so often


class Ticker(threading.Thread):
    """Calls ``tick()`` every ``interval`` seconds until stopped; keeps the
    first exception (the test reports it) instead of dying silently."""

    interval = 0.5

    def __init__(self):
        super().__init__(daemon=True, name=type(self).__name__)
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - kept for the test's report
                self.error = self.error or e
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def tick(self) -> None:
        raise NotImplementedError

    def halt(self) -> None:
        self._halt.set()
        self.join(30)


@dataclass
class RegistrarEvent:
    at: float
    added: list[str]
    removed: list[str]


class Registrar(Ticker):
    """The registrar of the child: makes the DS RRset at the parent what
    the child's CDS RRset says (digest SHA-256): adds the new DS, removes
    those the CDS no longer lists, removes all on the CDS delete record
    (algorithm 0, RFC 8078 section 4). No CDS: nothing changes (RFC 7344).
    Once given a ``validator``, it takes the CDS only from its validated
    answers (AD), as a parent must (RFC 7344 section 4.1); the first DS
    comes from the child's own server (the zone is not secure yet)."""

    def __init__(self, parent: Parent, child_port: int, ds_ttl: int):
        super().__init__()
        self.parent, self.child_port, self.ds_ttl = parent, child_port, ds_ttl
        self.validator: Unbound | None = None
        self.events: list[RegistrarEvent] = []

    def wanted(self) -> frozenset | None:
        """The DS set the child's CDS asks for; None when there is no CDS
        (or no validated one, or the child does not answer: it may be restarting)."""
        try:
            if self.validator is None:
                response = _ask(CHILD, "CDS", self.child_port)
            else:
                response = self.validator.query(CHILD.to_text(), "CDS", timeout=3)
                if not response.flags & dns.flags.AD:
                    return None
        except (dns.exception.DNSException, OSError):
            return None
        cds = _rdatas(response, dns.rdatatype.CDS, CHILD)
        if not cds:
            return None
        if any(rd.algorithm == 0 for rd in cds):
            return frozenset()
        return frozenset(dns.rdata.from_text("IN", "DS", rd.to_text()) for rd in cds if rd.digest_type == 2)

    def tick(self) -> None:
        self.sync()

    def sync(self) -> bool:
        """One look at the child and the parent; True if the DS changed."""
        want = self.wanted()
        if want is None:
            return False
        have = self.parent.ds()
        if want == have:
            return False
        self.parent.update_ds(want - have, have - want, self.ds_ttl)
        self.events.append(RegistrarEvent(time.time(), sorted(rd.to_text() for rd in want - have),
                                          sorted(rd.to_text() for rd in have - want)))
        return True


@dataclass
class Sample:
    at: float
    via: str
    name: str
    rcode: str
    ad: bool
    addresses: frozenset = frozenset()


class Probe(Ticker):
    """Asks each validator, with DO and RD, for the child's apex A (the
    ALIAS) and for a name that does not exist; records what comes back."""

    def __init__(self, validators: dict[str, Unbound]):
        super().__init__()
        self.validators = validators
        self.samples: list[Sample] = []

    def tick(self) -> None:
        for via, validator in self.validators.items():
            for name in (CHILD.to_text(), MISSING):
                at = time.time()
                try:
                    r = validator.query(name, "A", timeout=3)
                except (dns.exception.Timeout, OSError) as e:
                    self.samples.append(Sample(at, via, name, f"no answer ({type(e).__name__})", False))
                    continue
                addresses = frozenset(rd.to_text() for rd in _rdatas(r, dns.rdatatype.A, dns.name.from_text(name)))
                self.samples.append(Sample(at, via, name, dns.rcode.to_text(r.rcode()),
                                           bool(r.flags & dns.flags.AD), addresses))

    def wrong(self, secure: bool | None = True, since: float = 0, until: float = float("inf")) -> list[Sample]:
        """Samples in [since, until) that are not the expected answer: NOERROR
        with addresses at the apex, NXDOMAIN below it; with AD if ``secure``,
        without if ``secure`` is False, either way if None."""
        bad = []
        for s in self.samples:
            if not since <= s.at < until:
                continue
            expected = "NXDOMAIN" if s.name == MISSING else "NOERROR"
            if s.rcode != expected or (s.name != MISSING and not s.addresses) or (
                    secure is not None and s.ad != secure):
                bad.append(s)
        return bad


@dataclass
class KeyTimes:
    """What the watch saw of one key of the child, in UNIX time."""

    tag: int
    algorithm: int
    ksk: bool
    published: float | None = None  # first seen in the DNSKEY RRset
    signing: float | None = None  # first seen signing the SOA (or, for a KSK, the DNSKEY RRset)
    stopped: float | None = None  # last seen signing
    removed: float | None = None  # first seen gone from the DNSKEY RRset
    cds: float | None = None  # first seen in the CDS RRset


@dataclass
class Verification:
    at: float
    serial: int
    ok: bool
    output: str


class KeyWatch(Ticker):
    """Follows the child's keys at aliasd and verifies the zone by AXFR and
    ``dnssec-verify`` at each change of its keys, and at least every
    ``verify_every`` seconds."""

    def __init__(self, child_port: int, verify_every: float = 3):
        super().__init__()
        self.child_port = child_port
        self.verify_every = verify_every
        self.keys: dict[tuple[int, int], KeyTimes] = {}
        self.events: list[tuple[float, str]] = []
        self.verifications: list[Verification] = []
        self.cds_delete: float | None = None  # first seen: the CDS delete record (RFC 8078 section 4)
        self.unsigned: float | None = None  # first seen: no DNSKEY left
        self._last: tuple | None = None
        self._verified_at = 0.0

    def look(self) -> tuple[frozenset, frozenset, frozenset, frozenset]:
        """(DNSKEYs as (tag, algorithm, ksk), SOA signers, DNSKEY signers, CDS
        (tag, algorithm); (0, 0) for the CDS delete record)."""
        keys = _ask(CHILD, "DNSKEY", self.child_port)
        soa = _ask(CHILD, "SOA", self.child_port)
        cds = _ask(CHILD, "CDS", self.child_port)

        def signers(response, covered):
            return frozenset((rd.key_tag, rd.algorithm) for rd in _rdatas(response, dns.rdatatype.RRSIG, CHILD)
                             if rd.type_covered == covered)

        return (frozenset((dns.dnssec.key_id(rd), rd.algorithm, bool(rd.flags & 1))
                          for rd in _rdatas(keys, dns.rdatatype.DNSKEY, CHILD)),
                signers(soa, dns.rdatatype.SOA), signers(keys, dns.rdatatype.DNSKEY),
                frozenset((rd.key_tag, rd.algorithm) for rd in _rdatas(cds, dns.rdatatype.CDS, CHILD)))

    def tick(self) -> None:
        try:
            seen = self.look()
        except (dns.exception.DNSException, OSError):
            return  # aliasd is restarting
        now = time.time()
        if seen != self._last:
            self._record(now, *seen)
            self._last = seen
            self.verify()
        elif now - self._verified_at >= self.verify_every:
            self.verify()

    def _record(self, now: float, dnskeys, soa_signers, key_signers, cds) -> None:
        present = {(tag, alg) for tag, alg, _ in dnskeys}
        if (0, 0) in cds and self.cds_delete is None:
            self.cds_delete = now
            self.events.append((now, "CDS delete"))
        if not dnskeys and self.keys and self.unsigned is None:
            self.unsigned = now
            self.events.append((now, "unsigned"))
        for tag, alg, ksk in dnskeys:
            key = self.keys.setdefault((tag, alg), KeyTimes(tag, alg, ksk))
            if key.published is None or key.removed is not None:
                key.published, key.removed = key.published or now, None
                self.events.append((now, f"{'KSK' if ksk else 'ZSK'} {tag} (algorithm {alg}) published"))
        for (tag, alg), key in self.keys.items():
            signing = (tag, alg) in (key_signers if key.ksk else soa_signers)
            if signing:
                if key.signing is None:
                    key.signing = now
                    self.events.append((now, f"key {tag} signs"))
                key.stopped = now
            if (tag, alg) in cds and key.cds is None:
                key.cds = now
                self.events.append((now, f"CDS for key {tag}"))
            if (tag, alg) not in present and key.removed is None:
                key.removed = now
                self.events.append((now, f"key {tag} removed"))

    def verify(self) -> None:
        """AXFR of the child from aliasd, through ``dnssec-verify`` (once
        unsigned: no DNSSEC record left)."""
        self._verified_at = time.time()
        try:
            text = axfr_text(CHILD.to_text(), self.child_port)
        except (dns.exception.DNSException, OSError, EOFError):
            return  # aliasd is restarting
        serial = next(int(line.split()[6]) for line in text.splitlines() if " SOA " in line)
        types = {line.split()[3] for line in text.splitlines() if line.strip()}
        if "DNSKEY" in types:
            ok, output = dnssec_verify(CHILD.to_text(), text)
        else:  # gone insecure: unsigned, and not half-signed
            leftovers = types & {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"}
            ok, output = not leftovers, f"no DNSKEY, yet {sorted(leftovers)} in:\n{text}"
        self.verifications.append(Verification(self._verified_at, serial, ok, output))

    def failed(self) -> list[Verification]:
        return [v for v in self.verifications if not v.ok]

    def current(self, ksk: bool) -> list[KeyTimes]:
        """The keys of that role published now."""
        return [k for k in self.keys.values() if k.ksk == ksk and k.published and not k.removed]

    def rollovers(self) -> list[Rollover]:
        """Each completed rollover the watch saw: a removed key and the key of
        the same role published last before it went (for an algorithm
        rollover, the new algorithm's keys replace the old's together)."""
        done = []
        removed = sorted((k for k in self.keys.values() if k.removed), key=lambda k: k.removed)
        for old in removed:
            successors = [k for k in self.keys.values() if k.ksk == old.ksk and k is not old
                          and k.published and old.published < k.published <= old.removed]
            if not successors:
                continue  # the end of the zone's signing (going insecure)
            new = max(successors, key=lambda k: k.published)
            kind = "algorithm" if new.algorithm != old.algorithm else ("KSK" if old.ksk else "ZSK")
            done.append(Rollover(kind, old, new))
        # One algorithm rollover replaces both keys: keep its longer span.
        algorithm = [r for r in done if r.kind == "algorithm"]
        if algorithm:
            done = [r for r in done if r.kind != "algorithm"] + [max(algorithm, key=lambda r: r.took)]
        return sorted(done, key=lambda r: r.new.published)


@dataclass
class Rollover:
    kind: str  # "ZSK", "KSK" or "algorithm"
    old: KeyTimes
    new: KeyTimes

    @property
    def took(self) -> float:
        """From the successor's publication to the predecessor's removal."""
        return self.old.removed - self.new.published


@dataclass(frozen=True)
class Timings:
    """A policy's timings (seconds), and the shortest time each rollover can
    take under them (RFC 7583 section 3; the registrar's delay counted as 0).

    Ipub = zone propagation + DNSKEY TTL + publish safety;
    ZSK by pre-publication: Ipub + (zone propagation + longest TTL of the
    zone's signatures + retire safety);
    KSK by double-KSK: Ipub + parent propagation + DS TTL + retire safety
    (the old KSK leaves once no cache can hold the old DS);
    algorithm (RFC 6781 4.1.4, new keys with their signatures at once): as
    a KSK, the longest TTL of the zone in place of the DNSKEY TTL if longer;
    insecure: from the CDS delete, parent propagation + DS TTL + retire safety.
    """

    dnskey_ttl: int
    publish_safety: int
    retire_safety: int
    zone_propagation_delay: int
    parent_ds_ttl: int
    parent_propagation_delay: int
    max_zone_ttl: int

    @property
    def ipub(self) -> int:
        return self.zone_propagation_delay + max(self.dnskey_ttl, 0) + self.publish_safety

    def minimum(self, kind: str) -> int:
        parent = self.parent_propagation_delay + self.parent_ds_ttl + self.retire_safety
        if kind == "ZSK":
            return self.ipub + self.zone_propagation_delay + max(self.max_zone_ttl, self.dnskey_ttl) + self.retire_safety
        if kind == "KSK":
            return self.ipub + parent
        if kind == "algorithm":
            return self.zone_propagation_delay + max(self.max_zone_ttl, self.dnskey_ttl) + self.publish_safety + parent
        if kind == "insecure":
            return parent
        raise ValueError(kind)


# --------------------------------------------------------------------------
# The world


@dataclass
class DnssecWorld:
    """The parent, the validators, the secondary and the three watchers
    around one aliasd serving ``child.test.``."""

    directory: Path
    upstream: object
    ds_ttl: int = 3
    parent: Parent = field(init=False)
    secondary_port: int = field(init=False)

    def __post_init__(self):
        self.parent = Parent(self.directory / "parent").start_parent()
        self.secondary_port = free_port()
        self.secondary: Named | None = None
        self.validators: dict[str, Unbound] = {}
        self.registrar: Registrar | None = None
        self.probe: Probe | None = None
        self.watch: KeyWatch | None = None
        self.started = 0.0
        self.upstream.rotate(TARGET, "A", POOL, 1)

    def child_config(self, signing: str, policies: str = "") -> str:
        """aliasd's configuration: the child signed as ``signing`` says
        (``dnssec = true`` or ``dnssec-policy = "NAME"``), ``policies``
        holds the ``[dnssec-policy.NAME]`` tables."""
        return config(self.upstream, "nsec3", self.secondary_port, zone="child.test", signing=signing) + policies

    @staticmethod
    def child_files() -> dict[str, str]:
        return {"child.test.zone": CHILD_ZONE}

    @contextlib.contextmanager
    def running(self, server):
        """Everything around ``server`` (an AliasdProcess serving the child),
        the probe asking from the moment both validators see the child secure."""
        try:
            self._start(server)
            yield self
        finally:
            self.stop()

    def _start(self, server) -> None:
        self.registrar = Registrar(self.parent, server.port, self.ds_ttl)
        deadline = time.monotonic() + 20
        while not self.registrar.sync():  # the first DS, from the child's first CDS
            if time.monotonic() > deadline:
                raise RuntimeError(f"no CDS at the child to make the first DS from:\n{server.log()[-3000:]}")
            time.sleep(0.2)
        (self.directory / "secondary").mkdir(exist_ok=True)
        self.secondary = Named(self.directory / "secondary", self.secondary_port).start(
            CHILD.to_text(omit_final_dot=True), server.port)
        anchors = self.parent.anchors()
        for via, port in (("aliasd", server.port), ("secondary", self.secondary_port)):
            validator = Unbound(self.directory / f"unbound-{via}", extra=VALIDATOR_CACHE,
                                stubs={CHILD.to_text(): port})
            self.validators[via] = validator.start(PARENT.to_text(), self.parent.port, anchors)
        for via, validator in self.validators.items():
            self._wait_secure(via, validator)
        self.registrar.validator = self.validators["aliasd"]
        self.started = time.time()
        self.probe, self.watch = Probe(self.validators), KeyWatch(server.port)
        for ticker in (self.registrar, self.probe, self.watch):
            ticker.start()

    def _wait_secure(self, via: str, validator: Unbound, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rcode, ad, answer = validator.ad(CHILD.to_text(), "A", timeout=3)
            if rcode == dns.rcode.NOERROR and ad and answer:
                return
            time.sleep(0.2)
        raise AssertionError(f"the child never validated through {via}:\n{validator.log()[-3000:]}")

    def wait(self, seconds: float) -> None:
        """Let the world run (the probe and the watchers keep working)."""
        time.sleep(seconds)
        self.raise_errors()

    def wait_until(self, predicate, timeout: float, what: str):
        """Poll ``predicate()`` (the world keeps running) until it is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            self.wait(0.25)
        raise AssertionError(f"not within {timeout:.0f} s: {what}\n{self.report()}")

    def validation_failures(self) -> list[str]:
        """The lines in which a validator called something bogus (an
        unreachable server is not one)."""
        return [line for v in self.validators.values() for line in v.log().splitlines()
                if "validation failure" in line]

    def raise_errors(self) -> None:
        for ticker in (self.registrar, self.probe, self.watch):
            if ticker is not None and ticker.error is not None:
                raise AssertionError(f"{ticker.name} failed") from ticker.error

    def stop(self) -> None:
        for ticker in (self.probe, self.watch, self.registrar):
            if ticker is not None and ticker.is_alive():
                ticker.halt()
        for validator in self.validators.values():
            validator.stop()
        if self.secondary is not None:
            self.secondary.stop()
        self.parent.stop()

    # -- what the test asserts ---------------------------------------------

    def report(self, samples: list[Sample] = ()) -> str:
        """The world's story, for an assertion's message."""
        lines = [f"{time.strftime('%H:%M:%S', time.gmtime(t))} {what}"
                 for t, what in (self.watch.events if self.watch else ())]
        lines += [f"{time.strftime('%H:%M:%S', time.gmtime(e.at))} registrar: +{e.added} -{e.removed}"
                  for e in (self.registrar.events if self.registrar else ())]
        lines += [f"{time.strftime('%H:%M:%S', time.gmtime(s.at))} {s.via} {s.name}: {s.rcode} AD={s.ad}"
                  for s in samples[:20]]
        logs = "".join(f"\n---- {via} ----\n{v.log()[-3000:]}" for via, v in self.validators.items())
        return "\n".join(sorted(lines)) + logs

    def check(self, secure: bool | None = True, since: float = 0, until: float = float("inf"),
              outage: tuple[str, float, float] | None = None) -> None:
        """The probe got the expected answers (AD as ``secure`` says) through
        both validators, no validator called anything bogus, and every AXFR
        taken passed ``dnssec-verify``. ``outage`` = (via, start, end): the
        validator ``via`` could not reach its server then (aliasd stopped),
        its answers in that time do not count."""
        self.raise_errors()
        wrong = [s for s in self.probe.wrong(secure, since, until)
                 if not (outage and s.via == outage[0] and outage[1] <= s.at < outage[2])]
        assert not wrong, f"{len(wrong)} wrong answers:\n{self.report(wrong)}"
        bogus = self.validation_failures()
        assert not bogus, "\n".join(bogus[:20])
        failed = self.watch.failed()
        assert not failed, f"dnssec-verify failed on serial {failed[0].serial}:\n{failed[0].output}"

    def ds_texts(self) -> list[str]:
        """The rdatas of the parent's DS RRset for the child, as text."""
        return sorted(rd.to_text() for rd in self.parent.ds())

