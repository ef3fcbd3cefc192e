"""The private dnspython (and enum) APIs aliasd relies on, pinned.

They have no public equivalent, so a dnspython release may change them
without notice; aliasd would then go wrong quietly (a zone rule skipped,
an error naming the wrong line, a cache never trimmed). Each test here
checks the exact shape aliasd uses and says, when it fails, what changed
and which aliasd code to look at. pyproject.toml bounds dnspython to the
releases these were checked against: raise the bound only once this file
passes on the new release.

- ``dns.zonefile.Reader._rr_line``: called once per record, at its first
  line; aliasd.zones.zonefile._CheckingReader overrides it to remember where each
  record starts (its errors name that line).
- ``dns.zonefile.Reader._eat_line``: what the reader calls to skip a record
  whose owner is outside the zone; _CheckingReader makes it an error.
- ``dns.zonefile.Reader.tok``: a plain attribute that ``read`` assigns for
  each ``$INCLUDE`` file it opens; _CheckingReader makes it a property to
  check every included file.
- ``dns.node._neutral_types``: the types allowed beside a CNAME;
  aliasd.zones.zonefile._NEUTRAL_TYPES and aliasd.zones.masterfile._NEUTRAL copy it.
- ``Enum._value2member_map_`` of dns.flags.Flag and EDNSFlag: the cache of
  pseudo-members that aliasd.base.enumcache.trim empties.
- Twisted's reactor modules import ``twisted.internet._newtls``,
  ``twisted.internet.ssl`` and ``twisted.protocols.tls`` inside ``try: ...
  except ImportError``: aliasd.service.tap.import_reactor makes them fail
  (as without pyOpenSSL) for a server without TLS.
"""

from __future__ import annotations

import inspect

import dns.flags
import dns.name
import dns.node
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.version
import dns.zone
import dns.zonefile
import pytest

from aliasd.zones import masterfile, zonefile
from aliasd.zones.zonefile import ZoneFileError, parse_zone, read_with_dnspython

ORIGIN = "example.com."

#: Record lines end in "; record": _rr_line must be called at each, and only there.
ZONE = """\
$ORIGIN example.com.
$TTL 300
@ SOA ns1 hostmaster ( ; record
      1 3600 600 86400 60 )
; a comment line

  NS ns1 ; record
ns1 A 192.0.2.53 ; record
www 60 IN A 192.0.2.80 ; record
www AAAA 2001:db8::80 ; record
$TTL 60
mail MX 10 ns1 ; record
"""
RECORD_LINES = [n for n, line in enumerate(ZONE.splitlines(), 1) if line.endswith("; record")]


def changed(what: str, where: str) -> str:
    return (
        f"dnspython {dns.version.version} changed a private API aliasd relies on: {what}. "
        f"Adapt {where} (and this test), then widen the dnspython bound in pyproject.toml."
    )


def read_with(reader_class, text: str, **kwargs) -> tuple[dns.zone.Zone, dns.zonefile.Reader]:
    """Read ``text`` as aliasd.zones.zonefile.read_with_dnspython does, with ``reader_class``."""
    zone = dns.zone.Zone(ORIGIN, dns.rdataclass.IN, relativize=False)
    with zone.writer(True) as txn:
        reader = reader_class(dns.tokenizer.Tokenizer(text, "t.zone"), dns.rdataclass.IN, txn,
                              allow_include=True, **kwargs)
        reader.read()
    return zone, reader


# -- dns.zonefile.Reader -------------------------------------------------


def test_reader_constructor_takes_what_checking_reader_passes():
    parameters = inspect.signature(dns.zonefile.Reader.__init__).parameters
    assert list(parameters)[:4] == ["self", "tok", "rdclass", "txn"] and "allow_include" in parameters, changed(
        f"Reader.__init__ is now {inspect.signature(dns.zonefile.Reader.__init__)}",
        "aliasd.zones.zonefile.read_with_dnspython and _CheckingReader.__init__",
    )


@pytest.mark.parametrize("method", ["_rr_line", "_eat_line"])
def test_reader_methods_exist_with_no_arguments(method):
    function = getattr(dns.zonefile.Reader, method, None)
    assert callable(function), changed(f"dns.zonefile.Reader.{method} is gone", "aliasd.zones.zonefile._CheckingReader")
    assert list(inspect.signature(function).parameters) == ["self"], changed(
        f"Reader.{method} now takes {inspect.signature(function)}", f"aliasd.zones.zonefile._CheckingReader.{method}"
    )
    # aliasd's override is the one that runs.
    assert getattr(zonefile._CheckingReader, method) is not function


def test_rr_line_is_called_once_per_record_at_its_first_line():
    class Counting(dns.zonefile.Reader):
        def _rr_line(self):
            self.calls.append(self.tok.where()[1])
            super()._rr_line()

    Counting.calls = []
    zone, _ = read_with(Counting, ZONE)
    assert sum(len(rdataset) for _, rdataset in zone.iterate_rdatasets()) == len(RECORD_LINES)
    assert Counting.calls == RECORD_LINES, changed(
        f"Reader.read called _rr_line at lines {Counting.calls}, not once per record at {RECORD_LINES}",
        "aliasd.zones.zonefile._CheckingReader._rr_line (record_where names the line of an error)",
    )


def test_an_error_names_the_first_line_of_its_record():
    """What aliasd gets from overriding _rr_line: the record's own line, not
    the line where dnspython's tokenizer stopped (the next one)."""
    bad = ZONE.replace("www AAAA 2001:db8::80 ; record", "www AAAA ( 2001:db8::80 ; record\n  extra )")
    line = bad.splitlines().index("www AAAA ( 2001:db8::80 ; record") + 1
    with pytest.raises(ZoneFileError) as error:
        read_with_dnspython(dns.name.from_text(ORIGIN), "t.zone", bad)
    assert str(error.value).startswith(f"t.zone:{line}:"), changed(
        f"an error in a record at line {line} is reported as {error.value}",
        "aliasd.zones.zonefile._CheckingReader._rr_line",
    )


@pytest.mark.parametrize(
    "line",
    ["other.test. A 192.0.2.1", "$GENERATE 1-2 host$.other.test. A 192.0.2.$"],
    ids=["owner", "generate"],
)
def test_eat_line_is_what_skips_an_out_of_zone_record(line):
    class Counting(dns.zonefile.Reader):
        eaten = 0

        def _eat_line(self):
            Counting.eaten += 1
            super()._eat_line()

    text = ZONE + line + "\nafter A 192.0.2.9\n"
    zone, _ = read_with(Counting, text)
    assert Counting.eaten == 1, changed(
        f"Reader.read skipped the out-of-zone line {line!r} without calling _eat_line ({Counting.eaten} calls)",
        "aliasd.zones.zonefile._CheckingReader._eat_line (out-of-zone data must be an error)",
    )
    assert zone.get_node("after.example.com.") is not None  # only that line was skipped
    # And so aliasd refuses it, through either reader. (Only a record line
    # is checked for its line number: a $GENERATE line does not go through
    # _rr_line, and its error names the line after it, where dnspython's
    # tokenizer stands once it has read the line's last field.)
    prefix = f"t.zone:{len(ZONE.splitlines()) + 1}: " if line.startswith("other") else "t.zone:"
    for read in (lambda: read_with_dnspython(dns.name.from_text(ORIGIN), "t.zone", text),
                 lambda: parse_zone(ORIGIN, "t.zone", text.encode())):
        with pytest.raises(ZoneFileError) as error:
            read()
        assert str(error.value).startswith(prefix) and "is outside the zone example.com." in str(error.value), changed(
            f"an out-of-zone record now gives {error.value!r}", "aliasd.zones.zonefile._CheckingReader._eat_line"
        )


def test_read_assigns_tok_for_each_included_file(tmp_path):
    """_CheckingReader sees every $INCLUDE file through the assignment of
    ``self.tok`` that Reader.read makes when it opens one (and when it
    returns to the including file)."""

    class Watching(dns.zonefile.Reader):
        @property
        def tok(self):
            return self._tok

        @tok.setter
        def tok(self, tokenizer):
            self.__dict__.setdefault("files", []).append(tokenizer.filename)
            self._tok = tokenizer

    included = tmp_path / "more.zone"
    included.write_text("extra A 192.0.2.7\n")
    _, reader = read_with(Watching, ZONE + f"$INCLUDE {included}\nafter A 192.0.2.9\n")
    assert reader.files == ["t.zone", str(included), "t.zone"], changed(
        f"Reader.read assigned self.tok for {reader.files} (expected the file, the included file, the file)",
        "aliasd.zones.zonefile._CheckingReader.tok",
    )


# -- dns.node._neutral_types ------------------------------------------------


def test_neutral_types_are_a_set_of_rdata_types_with_nsec_nsec3_and_key():
    neutral = getattr(dns.node, "_neutral_types", None)
    assert isinstance(neutral, (set, frozenset)), changed(
        f"dns.node._neutral_types is {neutral!r}", "aliasd.zones.zonefile._NEUTRAL_TYPES and aliasd.zones.masterfile._NEUTRAL"
    )
    assert all(isinstance(t, dns.rdatatype.RdataType) for t in neutral), changed(
        f"dns.node._neutral_types holds {neutral!r}", "aliasd.zones.zonefile._NEUTRAL_TYPES and aliasd.zones.masterfile._NEUTRAL"
    )
    assert {dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.KEY} <= neutral, changed(
        f"dns.node._neutral_types is {sorted(map(str, neutral))}", "aliasd.zones.zonefile._check_record"
    )
    assert zonefile._NEUTRAL_TYPES == frozenset(neutral)
    assert masterfile._NEUTRAL == frozenset(int(t) for t in neutral)


def test_neutral_types_are_what_dnspython_itself_allows_beside_a_cname():
    """The private set agrees with the public classification (NodeKind), so
    aliasd's CNAME rule is dnspython's. Signatures (RRSIG) are classified by
    the type they cover and are not in the set."""
    neutral = dns.node._neutral_types
    for rdtype in dns.rdatatype.RdataType:
        if rdtype in (dns.rdatatype.CNAME, dns.rdatatype.RRSIG):
            continue
        kind = dns.node.NodeKind.classify(rdtype, dns.rdatatype.NONE)
        assert (kind is dns.node.NodeKind.NEUTRAL) == (rdtype in neutral), changed(
            f"dnspython classifies {rdtype.name} as {kind.name}, but _neutral_types is {sorted(map(str, neutral))}",
            "aliasd.zones.zonefile._NEUTRAL_TYPES and aliasd.zones.masterfile._NEUTRAL",
        )


def test_cname_rule_with_neutral_types_holds_in_both_readers():
    zone = "$ORIGIN example.com.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\nns1 300 A 192.0.2.1\nwww 300 CNAME ns1\n"
    nsec = zone + "www 300 NSEC ns1 CNAME NSEC\n"
    assert parse_zone(ORIGIN, "t.zone", nsec.encode()).rrsets.get(
        (dns.name.from_text("www.example.com."), dns.rdatatype.NSEC)) is not None
    assert read_with_dnspython(dns.name.from_text(ORIGIN), "t.zone", nsec) is not None
    with pytest.raises(ZoneFileError, match="beside a CNAME"):
        parse_zone(ORIGIN, "t.zone", (zone + "www 300 TXT x\n").encode())


# -- Enum._value2member_map_ -------------------------------------------------


@pytest.mark.parametrize("enum_class, value", [(dns.flags.Flag, 0x0110 | 0x0001), (dns.flags.EDNSFlag, 0x8000 | 0x0001)])
def test_flag_enums_cache_pseudo_members_in_value2member_map(enum_class, value):
    cache = getattr(enum_class, "_value2member_map_", None)
    assert isinstance(cache, dict), (
        f"{enum_class.__qualname__}._value2member_map_ is {type(cache).__name__} under this Python "
        "(enum internals changed): aliasd.base.enumcache.trim would silently do nothing; adapt it"
    )
    member = enum_class(value)
    assert value in cache and cache[value] is member, (
        f"{enum_class.__qualname__}({value:#x}) is not cached in _value2member_map_ any more: "
        "adapt aliasd.base.enumcache (its flood protection may no longer be needed)"
    )
    del cache[value]  # what enumcache.trim does: the value is made again on use
    assert enum_class(value) == member and int(enum_class(value)) == value
    for real in enum_class.__members__.values():
        assert cache.get(real.value) is real  # trim keeps these; they must be in the map


# -- the reactor's optional TLS imports ----------------------------------------


def test_reactor_modules_import_tls_only_if_importable():
    import twisted.internet.posixbase
    import twisted.internet.tcp

    from aliasd.service.tap import REACTOR_TLS_MODULES

    source = inspect.getsource(twisted.internet.posixbase) + inspect.getsource(twisted.internet.tcp)
    for name in REACTOR_TLS_MODULES:
        package, _, module = name.rpartition(".")
        for statement in (f"from {package} import {module}", f"from {name} import"):
            at = source.find(statement)
            if at >= 0:
                break
        assert at >= 0, (
            f"Twisted's reactor no longer imports {name}: review "
            "aliasd.service.tap.REACTOR_TLS_MODULES (what a server without TLS leaves out)"
        )
        before = source[:at].rstrip().rsplit("\n", 1)[-1].strip()
        assert before.startswith("try:") or before.startswith("#"), (
            f"Twisted imports {name} outside a try/except ImportError: a server "
            "without TLS would not start; adapt aliasd.service.tap.import_reactor"
        )
