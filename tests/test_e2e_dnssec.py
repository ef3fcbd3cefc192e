"""End to end: aliasd signs the flattened view, and real validators agree.

The transfer view of a signed zone (apex ALIAS flattened, a wildcard, a
delegation with glue, empty non-terminals) passes ``dnssec-verify`` and
``ldns-verify-zone``, for NSEC and NSEC3, before and after the ALIAS
target's address changes; IXFR carries the new signatures. Unbound and
BIND named, anchored at the DS that ``aliasd-check --ds`` prints, validate
aliasd's own answers (AD bit: positive, ALIAS, NXDOMAIN, NODATA, wildcard)
and those of a BIND secondary fed by aliasd; CNAMEs answered by wildcards
(at the start, the middle or the end of a chain) carry their proof that no
closer name exists, and Unbound validates them; signatures are refreshed
before they expire; keys survive a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.xfr
import dns.zone
import pytest

from tests.aliasd_process import TWISTD, free_port
from tests.conftest import need
from tests.secondaries import Named
from tests.validators import (
    RESOLVERS,
    Unbound,
    anchors_from_server,
    axfr_text,
    covers,
    dnssec_verify,
    ldns_verify,
)

pytestmark = pytest.mark.e2e

ZONE = """\
$ORIGIN example.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ ALIAS lb.cdn.test.
@ MX 10 mail
ns1 A 192.0.2.1
mail A 192.0.2.25
www A 192.0.2.10
*.wild A 192.0.2.30
sub NS ns.sub
ns.sub A 192.0.2.40
deep.a.b TXT "below two empty non-terminals"
"""


def config(upstream, denial="nsec3", notify_port=None, validity=None, zone="example.test", signing="dnssec = true"):
    """aliasd's configuration: ``zone`` (from ZONE.zone) signed as
    ``signing`` says, its ALIAS targets resolved at ``upstream``."""
    notify = f'notify = ["127.0.0.1:{notify_port}"]\n' if notify_port else ""
    window = f"signature-validity = {validity}\nrefresh-before = {validity * 5 // 8}\n" if validity else ""
    return f"""
    [resolver]
    upstreams = ["{upstream.endpoint}"]
    min-refresh = 1
    [dnssec]
    denial = "{denial}"
    {window}
    [zones."{zone}"]
    file = "{zone}.zone"
    allow-transfer = ["127.0.0.1"]
    {signing}
    {notify}
    """


def ds_of(workdir: Path, zone: str = "example.test") -> list[str]:
    """The DS lines ``aliasd-check --ds ZONE`` prints."""
    out = subprocess.run(
        [str(Path(TWISTD).with_name("aliasd-check")), "--config", str(workdir / "aliasd.toml"), "--ds", zone],
        capture_output=True, text=True, check=True,
    ).stdout
    return [line for line in out.splitlines() if " DS " in line]


def verified(port: int) -> str:
    text = axfr_text("example.test", port)
    for ok, output in (dnssec_verify("example.test", text), ldns_verify(text, "example.test")):
        assert ok, output
    return text


def apex_a(server) -> set[str]:
    return server.addresses("example.test")


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_the_signed_transfer_view_verifies_before_and_after_an_alias_rotation(aliasd, upstream, denial):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream, denial), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    before = verified(server.port)
    assert ("NSEC3" in before) == (denial == "nsec3") and "RRSIG" in before and "CDS" in before
    old_serial = server.query("example.test", "SOA").answer[0][0].serial
    upstream.set("lb.cdn.test.", "A", ["198.51.100.8"])
    server.wait_for(lambda: apex_a(server) == {"198.51.100.8"}, timeout=10)
    after = verified(server.port)
    assert "198.51.100.8" in after and "198.51.100.7" not in after
    # IXFR from the old serial takes a copy of the old zone to the new one.
    zone = dns.zone.from_text(before, "example.test", relativize=False)
    messages = list(dns.query.xfr("127.0.0.1", "example.test", rdtype=dns.rdatatype.IXFR, serial=old_serial,
                                  port=server.port, timeout=5, relativize=False))
    answers = [rr for m in messages for rr in m.answer]
    assert answers[1].rdtype == dns.rdatatype.SOA and answers[1][0].serial == old_serial  # incremental
    whole = dns.zone.from_text(after, "example.test", relativize=False)
    query, _ = dns.xfr.make_query(zone)  # IXFR from the zone's own serial, applied by dnspython
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=server.port, timeout=5)
    assert _records(zone) == _records(whole)
    # Only what changed was signed again: the www A signature is the same.
    assert _sig_line(before, "www.example.test.", "A") == _sig_line(after, "www.example.test.", "A")


def _records(zone: dns.zone.Zone) -> set:
    out = set()
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            for rd in rdataset:
                out.add((name.to_text().lower(), rdataset.ttl, rd.to_text()))
    return out


def _sig_line(text: str, owner: str, covered: str) -> str:
    return next(line for line in text.splitlines()
                if line.startswith(owner) and f"RRSIG\t{covered} " in line.replace(" RRSIG ", "\tRRSIG\t"))


@pytest.mark.parametrize("resolver_class", RESOLVERS, ids=lambda c: c.__name__)
def test_validating_resolvers_trust_aliasd_and_a_bind_secondary_of_it(aliasd, upstream, tmp_path, resolver_class):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    secondary_port = free_port()
    server = aliasd(config(upstream, "nsec3", secondary_port), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    anchors = ds_of(tmp_path)
    assert anchors
    (tmp_path / "named").mkdir()
    named = Named(tmp_path / "named", secondary_port).start("example.test", server.port)
    resolvers = []
    try:
        server.wait_for(lambda: named.addresses("example.test") == {"198.51.100.7"}, timeout=20)
        for authority_port, label in ((server.port, "aliasd"), (secondary_port, "secondary")):
            directory = tmp_path / f"resolver-{label}"
            directory.mkdir()
            resolver = resolver_class(directory).start("example.test", authority_port, anchors)
            resolvers.append(resolver)
            for name, rdtype, rcode in (
                ("example.test", "A", dns.rcode.NOERROR),  # the flattened ALIAS
                ("www.example.test", "A", dns.rcode.NOERROR),
                ("nothing.example.test", "A", dns.rcode.NXDOMAIN),
                ("www.example.test", "AAAA", dns.rcode.NOERROR),  # NODATA
                ("b.example.test", "TXT", dns.rcode.NOERROR),  # an empty non-terminal
                ("anything.wild.example.test", "A", dns.rcode.NOERROR),  # a wildcard
            ):
                got, ad, answer = resolver.ad(name, rdtype)
                assert (got, ad) == (rcode, True), (label, name, rdtype, got, ad, resolver.log()[-2000:])
        # The target moves: both paths answer the new address, still validated.
        upstream.set("lb.cdn.test.", "A", ["198.51.100.9"])
        server.wait_for(lambda: named.addresses("example.test") == {"198.51.100.9"}, timeout=20)
        for resolver in resolvers:
            resolver.flush()
            got, ad, answer = resolver.ad("example.test", "A")
            assert (got, ad) == (dns.rcode.NOERROR, True)
            assert {rd.address for rrset in answer if rrset.rdtype == dns.rdatatype.A for rd in rrset} == {"198.51.100.9"}
        # A wrong anchor: bogus, not trusted.
        resolvers[0].restart([anchors[0].replace(anchors[0].split()[-1], "00" * 32)])
        got, ad, _ = resolvers[0].ad("example.test", "A")
        assert got == dns.rcode.SERVFAIL and not ad
    finally:
        for resolver in resolvers:
            resolver.stop()
        named.stop()


def test_signatures_are_refreshed_before_they_expire(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream, "nsec", validity=24), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    first = _expiration(server)
    directory = tmp_path / "resolver"
    directory.mkdir()
    with Unbound(directory).start("example.test", server.port, ds_of(tmp_path)) as resolver:
        deadline = first + 3
        while time.time() < deadline:
            time.sleep(1)
        # Past the first signatures' expiry: new ones were made in time.
        assert _expiration(server) > first
        resolver.flush()
        got, ad, _ = resolver.ad("example.test", "A")
        assert (got, ad) == (dns.rcode.NOERROR, True)
        got, ad, _ = resolver.ad("nothing.example.test", "A")
        assert (got, ad) == (dns.rcode.NXDOMAIN, True)
    verified(server.port)


def _expiration(server) -> int:
    response = server.query("example.test", "A", want_dnssec=True)
    sig = next(r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG)
    return sig[0].expiration


def test_keys_and_signatures_survive_a_restart(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream, "nsec3"), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    before, ds = axfr_text("example.test", server.port), ds_of(tmp_path)
    private = sorted((tmp_path / "state" / "keys").glob("*.private"))
    assert len(private) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in private)
    server.stop()
    server.start()
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    # Same keys, same DS; and signed deterministically: the very same zone, same serial.
    assert ds_of(tmp_path) == ds
    assert axfr_text("example.test", server.port) == before
    assert "restart, view unchanged" in server.log()


def test_dnssec_answers_carry_signatures_only_with_do(aliasd, upstream):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream, "nsec"), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    for _ in range(2):  # the second time from the fast path
        plain = server.query("example.test", "A")
        assert [r.rdtype for r in plain.answer] == [dns.rdatatype.A]
        signed = server.query("example.test", "A", want_dnssec=True)
        assert [r.rdtype for r in signed.answer] == [dns.rdatatype.A, dns.rdatatype.RRSIG]
        assert signed.ednsflags & dns.flags.DO
        missing = server.query("nothing.example.test", "A", want_dnssec=True)
        assert missing.rcode() == dns.rcode.NXDOMAIN
        assert {r.rdtype for r in missing.authority} == {dns.rdatatype.SOA, dns.rdatatype.RRSIG, dns.rdatatype.NSEC}
        referral = server.query("host.sub.example.test", "A", want_dnssec=True)
        assert {r.rdtype for r in referral.authority} == {dns.rdatatype.NS, dns.rdatatype.NSEC, dns.rdatatype.RRSIG}


def test_a_dynamic_update_of_a_signed_zone_is_signed_at_once(aliasd, upstream, tmp_path):
    from tests.test_e2e_update import OPS, nsupdate

    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    text = config(upstream, "nsec3") + f"""
    update = [ {{ key = "ops" }} ]
    [keys.ops]
    secret = "{OPS}"
    """
    server = aliasd(text, {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    rc, out = nsupdate(server.port, "update add added.example.test 60 A 192.0.2.77\nupdate delete www.example.test A")
    assert rc == 0, out
    text = verified(server.port)
    assert "added.example.test." in text and "192.0.2.10" not in text
    directory = tmp_path / "resolver"
    directory.mkdir()
    with Unbound(directory).start("example.test", server.port, ds_of(tmp_path)) as resolver:
        got, ad, answer = resolver.ad("added.example.test", "A")
        assert (got, ad) == (dns.rcode.NOERROR, True)
        got, ad, answer = resolver.ad("www.example.test", "A")  # the name is gone: NXDOMAIN, proven
        assert (got, ad) == (dns.rcode.NXDOMAIN, True)


def test_a_reload_turns_signing_on_and_off(aliasd, upstream, tmp_path):
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream).replace("dnssec = true", "dnssec = false"), {"example.test.zone": ZONE},
                    server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    assert "RRSIG" not in axfr_text("example.test", server.port)
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace("dnssec = false", "dnssec = true"))
    server.proc.send_signal(1)
    server.wait_for(lambda: "RRSIG" in axfr_text("example.test", server.port), timeout=10)
    verified(server.port)
    assert ds_of(tmp_path)
    conf.write_text(conf.read_text().replace("dnssec = true", "dnssec = false"))
    server.proc.send_signal(1)
    server.wait_for(lambda: "RRSIG" not in axfr_text("example.test", server.port), timeout=10)
    assert server.query("example.test", "A", want_dnssec=True).answer[-1].rdtype == dns.rdatatype.A


WILDCARD_CNAMES = """\
$ORIGIN example.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
ns1 A 192.0.2.1
target A 192.0.2.10
* CNAME target
*.hop CNAME next
next CNAME target
start CNAME x.mid
*.mid CNAME target
*.two CNAME b.mid
*.gone CNAME missing.target
"""
# (query name, type, rcode, the names a wildcard CNAME answers on the way).
WILDCARD_CHAINS = [
    ("foo.example.test.", "A", dns.rcode.NOERROR, ["foo.example.test."]),
    ("foo.example.test.", "AAAA", dns.rcode.NOERROR, ["foo.example.test."]),  # NODATA at the target
    ("foo.hop.example.test.", "A", dns.rcode.NOERROR, ["foo.hop.example.test."]),  # on to a CNAME
    ("start.example.test.", "A", dns.rcode.NOERROR, ["x.mid.example.test."]),  # a wildcard in the middle
    ("a.two.example.test.", "A", dns.rcode.NOERROR, ["a.two.example.test.", "b.mid.example.test."]),
    ("foo.gone.example.test.", "A", dns.rcode.NXDOMAIN, ["foo.gone.example.test."]),
]


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_wildcard_cname_answers_prove_that_no_closer_name_exists(aliasd, upstream, tmp_path, denial):
    """Each CNAME a wildcard answers carries the NSEC or NSEC3 record that
    covers the name it answers (RFC 4035 3.1.3.3, RFC 5155 7.2.6), signed;
    without it validators call the answer bogus."""
    server = aliasd(config(upstream, denial), {"example.test.zone": WILDCARD_CNAMES}, server="serial-interval = 0\n")
    dnskey = server.wait_for(lambda: server.query("example.test", "DNSKEY").answer, timeout=10)[0]
    keys = {dnskey.name: dnskey}
    for name, rdtype, rcode, expanded in WILDCARD_CHAINS:
        response = server.query(name, rdtype, want_dnssec=True)
        assert response.rcode() == rcode, (name, rdtype, response)
        for section in (response.answer, response.authority):
            for sig in (r for r in section if r.rdtype == dns.rdatatype.RRSIG):
                covered = next(r for r in section if r.name == sig.name and r.rdtype == sig.covers)
                dns.dnssec.validate(covered, sig, keys)
        for wild in map(dns.name.from_text, expanded):
            # Each expanded name's parent is its closest encloser: the name
            # is its own next closer name, which NSEC3 covers too.
            assert any(covers(rrset, wild) for rrset in response.authority), (name, wild, response)
    directory = tmp_path / "resolver"
    directory.mkdir()
    anchors = anchors_from_server("example.test", server.port)
    with Unbound(directory).start("example.test", server.port, anchors) as resolver:
        for name, rdtype, rcode, _ in WILDCARD_CHAINS:
            got, ad, _ = resolver.ad(name, rdtype)
            assert (got, ad) == (rcode, True), (name, rdtype, got, ad, resolver.log()[-2000:])


#: Records aliasd's signer makes, as a zone file might hold them (one line each).
FOREIGN_DNSSEC = {
    "NSEC3PARAM": ("@ 0 NSEC3PARAM 1 0 0 -", "NSEC3PARAM record at example.test."),
    "RRSIG": ("www RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. " + "A" * 88,
              "RRSIG record at www.example.test."),
}


def check_config(workdir: Path) -> subprocess.CompletedProcess:
    """``aliasd-check --config`` (as ``python -m aliasd check``, the same code;
    run in ``workdir`` so that, as for twistd, PYTHONPATH says which aliasd)."""
    return subprocess.run([sys.executable, "-m", "aliasd", "check", "--config", str(workdir / "aliasd.toml")],
                          capture_output=True, text=True, timeout=60, cwd=workdir)


@pytest.mark.parametrize("kind", sorted(FOREIGN_DNSSEC))
def test_a_signed_zones_file_with_the_signers_records_is_refused_naming_file_and_line(aliasd, upstream, tmp_path,
                                                                                      kind):
    """aliasd-check reports it, a reload keeps serving the last good data
    (still verified), and so does a start with it (from the store)."""
    line, what = FOREIGN_DNSSEC[kind]
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    server = aliasd(config(upstream), {"example.test.zone": ZONE}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    before = verified(server.port)
    path = tmp_path / "example.test.zone"
    path.write_text(path.read_text() + line + "\n")  # line 14
    error = f"{path}:14: {what}: aliasd makes the DNSSEC records of a signed zone (dnssec = true) itself"
    check = check_config(tmp_path)
    assert check.returncode == 1 and error in check.stdout, check.stdout + check.stderr
    server.proc.send_signal(1)  # SIGHUP: reload
    server.wait_for(lambda: "reload done" in server.log(), timeout=10)
    assert f"reload: zone example.test.: {error}; zone example.test. keeps serving its previous data" in server.log()
    assert verified(server.port) == before
    server.stop()
    server.start()  # the zone serves its last good data from the store, signed and verified
    assert f"zone example.test.: {error}; zone example.test. serves its last good data from the store" in server.log()
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    verified(server.port)


def test_a_zone_whose_file_holds_dnssec_records_is_not_signed_by_a_reload_until_they_go(aliasd, upstream, tmp_path):
    """Turning dnssec on for a zone whose file has its own NSEC3PARAM: the
    reload reports the file, and the zone is served as before, unsigned;
    once the line is gone, a reload signs it."""
    upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
    line, what = FOREIGN_DNSSEC["NSEC3PARAM"]
    server = aliasd(config(upstream).replace("dnssec = true", "dnssec = false"),
                    {"example.test.zone": ZONE + line + "\n"}, server="serial-interval = 0\n")
    server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
    before = axfr_text("example.test", server.port)
    assert "NSEC3PARAM" in before and "RRSIG" not in before  # an unsigned zone's file may hold one
    conf = tmp_path / "aliasd.toml"
    conf.write_text(conf.read_text().replace("dnssec = false", "dnssec = true"))
    server.proc.send_signal(1)
    server.wait_for(lambda: "reload done" in server.log(), timeout=10)
    assert f"example.test.zone:14: {what}" in server.log()
    assert axfr_text("example.test", server.port) == before  # as before: not signed
    path = tmp_path / "example.test.zone"
    path.write_text(path.read_text().replace(line + "\n", ""))
    server.proc.send_signal(1)
    server.wait_for(lambda: "RRSIG" in axfr_text("example.test", server.port), timeout=10)
    verified(server.port)


def _keygen(keys: Path, *options: str) -> str:
    """A key made by dnssec-keygen in aliasd's key directory: its file stem."""
    keys.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([need("dnssec-keygen"), "-q", "-a", "ECDSAP256SHA256", "-K", str(keys), *options,
                           "example.test"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _settime(keys: Path, stem: str, **moments: float) -> None:
    """dnssec-settime -P/-A/-I/-D at these UNIX times (UTC)."""
    args = [arg for flag, when in moments.items()
            for arg in (f"-{flag}", time.strftime("%Y%m%d%H%M%S", time.gmtime(when)))]
    subprocess.run([need("dnssec-settime"), *args, "-K", str(keys), stem], capture_output=True, check=True)


def _dnskeys(server) -> set[int]:
    answer = server.query("example.test", "DNSKEY").answer
    return {dns.dnssec.key_id(rd) for rrset in answer for rd in rrset}


def _www_signers(server) -> set[int]:
    response = server.query("www.example.test", "A", want_dnssec=True)
    return {rd.key_tag for rrset in response.answer if rrset.rdtype == dns.rdatatype.RRSIG for rd in rrset}


def _transferred_dnskeys(text: str) -> set[int]:
    zone = dns.zone.from_text(text, "example.test", relativize=False)
    return {dns.dnssec.key_id(rd) for rd in zone.find_rdataset("example.test.", dns.rdatatype.DNSKEY)}


def _tag(stem: str) -> int:
    return int(stem.rsplit("+", 1)[1])


def test_a_zsk_rollover_by_key_timing_happens_at_its_moments_without_a_reload(aliasd, upstream, tmp_path):
    """Issue 20.8: the new ZSK (dnssec-settime -P, -A seconds ahead) enters
    the DNSKEY RRset at its Publish time, signs from its Activate time, and
    the old ZSK (-I, -D) stops signing, then leaves the RRset at its Delete
    time: each at its moment, with a new serial and a NOTIFY, no reload;
    every step's AXFR passes dnssec-verify and ldns-verify-zone."""
    from tests.test_e2e_notify import NotifyListener

    keys = tmp_path / "state" / "keys"
    ksk, old, new = _keygen(keys, "-f", "KSK"), _keygen(keys), _keygen(keys, "-G")
    publish = time.time() + 8  # (start-up takes a second or two)
    activate, delete = publish + 6, publish + 12
    _settime(keys, new, P=publish, A=activate)
    _settime(keys, old, I=activate, D=delete)
    listener = NotifyListener("127.0.0.1")
    try:
        upstream.set("lb.cdn.test.", "A", ["198.51.100.7"])
        server = aliasd(config(upstream, "nsec3", listener.port), {"example.test.zone": ZONE},
                        server="serial-interval = 0\n")
        server.wait_for(lambda: apex_a(server) == {"198.51.100.7"}, timeout=10)
        assert time.time() < publish - 1, "aliasd took too long to start for this test"
        assert (_dnskeys(server), _www_signers(server)) == ({_tag(ksk), _tag(old)}, {_tag(old)})
        assert _transferred_dnskeys(verified(server.port)) == {_tag(ksk), _tag(old)}
        serials = [server.query("example.test", "SOA").answer[0][0].serial]

        for moment, dnskeys, signers in ((publish, {_tag(ksk), _tag(old), _tag(new)}, {_tag(old)}),
                                         (activate, {_tag(ksk), _tag(old), _tag(new)}, {_tag(new)}),
                                         (delete, {_tag(ksk), _tag(new)}, {_tag(new)})):
            server.wait_for(lambda dnskeys=dnskeys, signers=signers: (_dnskeys(server), _www_signers(server))
                            == (dnskeys, signers), timeout=moment - time.time() + 3, interval=0.1)
            assert time.time() >= moment - 1  # (key times are whole seconds)
            serials.append(server.query("example.test", "SOA").answer[0][0].serial)
            assert serials[-1] > serials[-2]
            server.wait_for(lambda: any(m.answer[0][0].serial == serials[-1] for _, m in listener.received))
            assert _transferred_dnskeys(verified(server.port)) == dnskeys
        log = server.log()
        assert "DNSSEC key timing event" in log and "reload" not in log
    finally:
        listener.close()
