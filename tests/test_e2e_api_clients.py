"""End to end: real automation clients manage zones through the PowerDNS
Authoritative HTTP API, against real PowerDNS 4.7 and against aliasd
(issue 22). Each test runs once per target (``api_target``): PowerDNS shows
that the test and the client are right, aliasd that it is compatible.

* lego (Debian ``lego``, ``--dns pdns``) gets a certificate for
  ``*.example.test`` and ``example.test`` from pebble. pebble validates the
  dns-01 challenges by asking the server under test (``-dnsserver``); lego
  finds the zone and checks propagation through it too (``--dns.resolvers``;
  ``--dns.disable-cp`` spares it asking the zone's NS names on port 53).
* octoDNS with ``octodns-powerdns`` creates and syncs a YAML zone holding
  A, MX, TXT and an apex ALIAS, then plans no changes, also after the server
  restarted.
* dns-lexicon's ``powerdns`` provider creates, lists and deletes TXT records.

The clients live in ``.venv-clients`` (``bash tests/clients/setup.sh``), as
in tests/test_e2e_update_clients.py, whose harness (pebble, client lookup,
a loopback-only environment) these tests share. Everything stays on
127.0.0.1 and high ports.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import dns.rcode
import pytest
from cryptography import x509

from tests.api_server import api_target  # noqa: F401 (a fixture)
from tests.test_e2e_update_clients import (  # noqa: F401 (pebble: a fixture)
    client,
    loopback_env,
    octodns_project,
    octodns_sync,
    pebble,
    plan_summary,
    program,
    run_details,
    run_watching,
)

pytestmark = pytest.mark.e2e

ZONE = "example.test."
CHALLENGE = "_acme-challenge.example.test."


def create_zone(server, kind: str = "Master", rrsets=()) -> None:
    """example.test. through the API, with ns1 and a few addresses."""
    records = [
        {"name": f"ns1.{ZONE}", "type": "A", "ttl": 300, "records": [{"content": "127.0.0.1", "disabled": False}]},
        {"name": ZONE, "type": "A", "ttl": 300, "records": [{"content": "192.0.2.1", "disabled": False}]},
        {"name": f"www.{ZONE}", "type": "A", "ttl": 300, "records": [{"content": "192.0.2.2", "disabled": False}]},
        *rrsets,
    ]
    response = server.request("POST", "/zones", {"name": ZONE, "kind": kind, "nameservers": [f"ns1.{ZONE}"],
                                                 "rrsets": records})
    assert response.status == 201, (response, server.log()[-3000:])


def api_rrsets(server) -> dict[tuple[str, str], tuple[int, set[str]]]:
    """The zone's rrsets as the API shows them: (name, type) -> (ttl, contents)."""
    response = server.request("GET", f"/zones/{ZONE}")
    assert response.status == 200, response
    return {(r["name"], r["type"]): (r["ttl"], {x["content"] for x in r["records"]}) for r in response.json()["rrsets"]}


# ---------------------------------------------------------------------------
# lego


def test_lego_gets_a_wildcard_certificate_through_the_api(tmp_path, api_target, pebble):  # noqa: F811
    lego = program("lego")
    program("pebble")
    server = api_target()
    create_zone(server)
    acme = pebble(server.dns_port)
    argv = [
        lego, "--server", acme.directory_url, "--accept-tos", "--email", "acme@example.com",
        "--path", str(tmp_path / "lego"), "--dns", "pdns",
        "--dns.resolvers", f"127.0.0.1:{server.dns_port}", "--dns.disable-cp",
        "--domains", "*.example.test", "--domains", "example.test", "run",
    ]
    # each different challenge rrset the API showed while lego ran
    returncode, out, seen = run_watching(
        argv,
        loopback_env(
            PDNS_API_URL=server.root, PDNS_API_KEY=server.key, PDNS_TTL="60",
            PDNS_PROPAGATION_TIMEOUT="30", PDNS_POLLING_INTERVAL="1",
            LEGO_CA_CERTIFICATES=str(acme.ca_file),
        ),
        lambda: frozenset(api_rrsets(server).get((CHALLENGE, "TXT"), (0, set()))[1]), (OSError, AssertionError),
        timeout=90,
    )
    details = (
        f"lego exited with {returncode}:\n{out[-6000:]}\n--- {server.kind} log:\n{server.log()[-6000:]}"
        f"\n--- pebble log:\n{acme.log()[-3000:]}\n--- challenge rrsets seen: {seen}"
    )
    assert returncode == 0, details

    # Both challenges (the wildcard's and the bare name's) were in the zone
    # together while pebble validated: two 43-character key authorization
    # digests (RFC 8555 8.4), quoted as TXT content.
    both = [values for values in seen if len(values) == 2]
    assert both, details
    assert all(len(value.strip('"')) == 43 and value.startswith('"') for value in both[0]), details
    # ... and none is left afterwards, through the API or over DNS.
    assert (CHALLENGE, "TXT") not in api_rrsets(server), details
    response = server.query(CHALLENGE, "TXT")
    assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not response.answer, details
    # The rest of the zone is untouched.
    assert server.texts(f"www.{ZONE}", "A") == {"192.0.2.2"}

    pem = (tmp_path / "lego" / "certificates" / "_.example.test.crt").read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"*.example.test", "example.test"}


# ---------------------------------------------------------------------------
# octoDNS + octodns-powerdns

OCTODNS_YAML = """\
---
'':
  - type: ALIAS
    ttl: 300
    value: target.upstream.test.
  - type: NS
    ttl: 3600
    value: ns1.example.test.
  - type: MX
    value: {exchange: mail.example.test., preference: 10}
  - type: TXT
    value: v=spf1 mx -all
ns1:
  type: A
  value: 127.0.0.1
www:
  ttl: 600
  type: A
  values: [192.0.2.5, 192.0.2.6]
mail:
  type: A
  value: 192.0.2.25
"""

# What the API must show afterwards: (name, type) -> (TTL, contents).
OCTODNS_EXPECTED = {
    (ZONE, "ALIAS"): (300, {"target.upstream.test."}),
    (ZONE, "NS"): (3600, {"ns1.example.test."}),
    (ZONE, "MX"): (3600, {"10 mail.example.test."}),
    (ZONE, "TXT"): (3600, {'"v=spf1 mx -all"'}),
    (f"ns1.{ZONE}", "A"): (3600, {"127.0.0.1"}),
    (f"www.{ZONE}", "A"): (600, {"192.0.2.5", "192.0.2.6"}),
    (f"mail.{ZONE}", "A"): (3600, {"192.0.2.25"}),
}
TARGET_ADDRESSES = {"203.0.113.10", "203.0.113.11"}


def sync(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return octodns_sync(directory, *args, plugin="octodns_powerdns")


def check_octodns_zone(server, details: str) -> None:
    """The API shows the YAML's records (and the SOA beside them), and the
    DNS answers them, the apex ALIAS with the target's addresses."""
    have = api_rrsets(server)
    assert {k: v for k, v in have.items() if k[1] != "SOA"} == OCTODNS_EXPECTED, (have, details)
    assert server.texts(f"www.{ZONE}", "A") == {"192.0.2.5", "192.0.2.6"}, details
    assert server.texts(ZONE, "MX") == {"10 mail.example.test."}, details
    # Flattened (PowerDNS: expand-alias with the test's upstream as resolver).
    deadline = time.monotonic() + 5
    while server.texts(ZONE, "A") != TARGET_ADDRESSES and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.texts(ZONE, "A") == TARGET_ADDRESSES, details


def test_octodns_syncs_a_yaml_zone_then_plans_no_changes(tmp_path, api_target, upstream):  # noqa: F811
    client("octodns-sync", "octodns_powerdns")
    upstream.set("target.upstream.test", "A", sorted(TARGET_ADDRESSES), ttl=30)
    server = api_target(upstream=upstream.endpoint)
    octo = octodns_project(
        tmp_path / "octodns", OCTODNS_YAML,
        f"""\
        class: octodns_powerdns.PowerDnsProvider
        host: 127.0.0.1
        port: {server.http_port}
        api_key: {server.key}
        timeout: 10
        """,
    )

    # The zone does not exist: octoDNS's PATCH gets 404, and it creates the
    # zone with a POST holding every record.
    first = sync(octo, "--doit")
    details = run_details("octodns-sync", first, server, 6000)
    assert first.returncode == 0, details
    assert plan_summary(first) == {"Creates": 7, "Updates": 0, "Deletes": 0}, details
    check_octodns_zone(server, details)

    second = sync(octo)
    details = run_details("second octodns-sync", second, server)
    assert second.returncode == 0 and plan_summary(second) is None, details
    assert "No changes were planned" in second.stdout + second.stderr, details

    # A change in the YAML is one PATCH: www replaced, mail deleted.
    (octo / "config" / "example.test.yaml").write_text(
        OCTODNS_YAML.replace("values: [192.0.2.5, 192.0.2.6]", "values: [192.0.2.7]")
        .replace("mail:\n  type: A\n  value: 192.0.2.25\n", "")
    )
    third = sync(octo, "--doit")
    details = run_details("octodns-sync of a change", third, server)
    assert third.returncode == 0 and plan_summary(third) == {"Creates": 0, "Updates": 1, "Deletes": 1}, details
    assert server.texts(f"www.{ZONE}", "A") == {"192.0.2.7"}, details
    assert server.query(f"mail.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN, details

    # What the API created outlives a restart: the same records, and octoDNS
    # still sees nothing to change.
    server.restart()
    have = api_rrsets(server)
    assert have[(f"www.{ZONE}", "A")] == (600, {"192.0.2.7"}) and (f"mail.{ZONE}", "A") not in have, server.log()
    assert have[(ZONE, "ALIAS")] == (300, {"target.upstream.test."}), server.log()
    fourth = sync(octo)
    details = run_details("octodns-sync after restart", fourth, server)
    assert fourth.returncode == 0 and plan_summary(fourth) is None, details
    assert "No changes were planned" in fourth.stdout + fourth.stderr, details


# ---------------------------------------------------------------------------
# dns-lexicon

# lexicon's command line finds the zone of a domain with dnspython's default
# resolver (resolv.conf: no port): this runs its own entry point with that
# resolver pointed at the server under test, as lego's --dns.resolvers does.
LEXICON = """\
import os, sys, dns.resolver
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = int(os.environ["LEXICON_TEST_DNS_PORT"])
dns.resolver.default_resolver = resolver
from lexicon._private.cli import main  # what the lexicon console script runs
sys.argv[0] = "lexicon"
sys.exit(main())
"""


def lexicon(server, *args: str) -> str:
    client("lexicon", "lexicon")
    done = subprocess.run(
        [str(Path(client("lexicon", "lexicon")).with_name("python")), "-c", LEXICON, "powerdns", *args,
         "--auth-token", server.key, "--pdns-server", server.root],
        capture_output=True, text=True, timeout=60, check=False,
        env=loopback_env(LEXICON_TEST_DNS_PORT=str(server.dns_port)),
    )
    assert done.returncode == 0, f"lexicon {' '.join(args)}:\n{done.stdout}\n{done.stderr}\n{server.log()[-4000:]}"
    return done.stdout


def test_lexicon_creates_lists_and_deletes_txt_records(api_target):  # noqa: F811
    server = api_target()
    create_zone(server)
    name = f"_lexicon.{ZONE}"

    def listed() -> list[dict]:
        return json.loads(lexicon(server, "list", "example.test", "TXT", "--name", "_lexicon", "--output", "JSON"))

    assert listed() == []
    lexicon(server, "create", "example.test", "TXT", "--name", "_lexicon", "--content", "first value", "--ttl", "120")
    lexicon(server, "create", "example.test", "TXT", "--name", "_lexicon", "--content", "second value")
    assert api_rrsets(server)[(name, "TXT")] == (120, {'"first value"', '"second value"'})
    assert server.texts(name, "TXT") == {'"first value"', '"second value"'}
    assert {(r["name"], r["content"]) for r in listed()} == {
        ("_lexicon.example.test", "first value"), ("_lexicon.example.test", "second value")}

    # Deleting one value is a REPLACE of the rest; deleting the last, a
    # REPLACE with no records, which removes the rrset.
    lexicon(server, "delete", "example.test", "TXT", "--name", "_lexicon", "--content", "first value")
    assert server.texts(name, "TXT") == {'"second value"'}
    assert [r["content"] for r in listed()] == ["second value"]
    lexicon(server, "delete", "example.test", "TXT", "--name", "_lexicon", "--content", "second value")
    assert listed() == []
    assert (name, "TXT") not in api_rrsets(server)
    assert server.query(name, "TXT").rcode() == dns.rcode.NXDOMAIN
    assert server.texts(f"www.{ZONE}", "A") == {"192.0.2.2"}
