"""Unit tests: the RFC 9432 catalog zone that aliasd builds from its zones."""

from __future__ import annotations

import io
import pickle
import re
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype as T
import dns.rrset
import pytest

from aliasd.replicate.transfer import ixfr_rrsets
from aliasd.service.authority import ZoneAuthority
from aliasd.zones.catalog import catalog_source, member_id, with_members_changed
from aliasd.zones.zone import ZoneBase
from aliasd.zones.zonefile import load_zone_file

N = dns.name.from_text
CATALOG = N("catalog.example.")
MEMBERS = [N("example.com."), N("example.org."), N("sub.example.net.")]


def records(source) -> set[str]:
    """Every record of a source as text, for exact comparisons."""
    return {rr.to_text() for rr in source.rrsets.values()}


def ptrs(source) -> dict[dns.name.Name, dns.rrset.RRset]:
    return {name: rrset for (name, rdtype), rrset in source.rrsets.items() if rdtype == T.PTR}


# -- member IDs ---------------------------------------------------------------


def test_member_id_is_the_sha1_label_bind_documents():
    # The BIND ARM's catalog example and catzhash.py pin this construction.
    assert member_id(N("domain.example.")) == "5960775ba382e7a4e09263fc06e7c00569b6a05c"
    assert member_id(N("example.com.")) == "c5e4b4da1e5a620ddaa3635e55c3732a5b49c7f4"


def test_member_id_is_case_insensitive_and_a_valid_label():
    assert member_id(N("Example.COM.")) == member_id(N("example.com."))
    label = member_id(N("example.com."))
    assert re.fullmatch(r"[0-9a-f]{40}", label)
    assert N(f"{label}.zones.catalog.example.").labels[0] == label.encode()


def test_member_ids_are_distinct():
    names = [N(f"zone{i}.example.") for i in range(5000)] + [N("example."), N("example.com.")]
    assert len({member_id(n) for n in names}) == len(names)


# -- the catalog's records ----------------------------------------------------


def test_catalog_has_exactly_the_records_rfc_9432_requires():
    source = catalog_source(CATALOG, MEMBERS)
    assert source.origin == CATALOG
    assert records(source) == {
        "catalog.example. 0 IN SOA invalid. invalid. 1 3600 600 2147483646 0",
        "catalog.example. 0 IN NS invalid.",
        'version.catalog.example. 0 IN TXT "2"',
        *(f"{member_id(m)}.zones.catalog.example. 0 IN PTR {m}" for m in MEMBERS),
    }
    assert all(len(rrset) == 1 for rrset in source.rrsets.values())
    assert all(name.is_absolute() for name, _ in source.rrsets)
    assert all(rrset.name == name and rrset.rdtype == rdtype for (name, rdtype), rrset in source.rrsets.items())
    assert source.serial == 1
    assert not source.aliases
    with pytest.raises(TypeError):  # a read-only view of the packed records
        source.rrsets[(CATALOG, T.TXT)] = None


def test_catalog_without_members_is_still_a_valid_catalog():
    source = catalog_source(CATALOG, [])
    assert {(n.to_text(), T.to_text(t)) for n, t in source.rrsets} == {
        ("catalog.example.", "SOA"),
        ("catalog.example.", "NS"),
        ("version.catalog.example.", "TXT"),
    }


def test_the_catalog_is_never_its_own_member():
    source = catalog_source(CATALOG, [*MEMBERS, N("catalog.example."), N("CATALOG.Example.")])
    assert set(ptrs(source)) == {N(f"{member_id(m)}.zones.catalog.example.") for m in MEMBERS}


def test_a_zone_named_twice_is_listed_once_whatever_the_order():
    one = catalog_source(CATALOG, [N("Example.com."), N("example.com."), N("example.org.")])
    other = catalog_source(CATALOG, [N("example.org."), N("example.com."), N("Example.com.")])
    assert len(ptrs(one)) == 2
    assert records(one) == records(other)
    assert list(one.rrsets) == list(other.rrsets)  # same order too


def test_same_members_give_the_same_catalog():
    one = catalog_source(CATALOG, MEMBERS)
    other = catalog_source(CATALOG, list(reversed(MEMBERS)))
    assert records(one) == records(other) and list(one.rrsets) == list(other.rrsets)


def test_adding_or_removing_a_member_changes_exactly_one_ptr():
    before = catalog_source(CATALOG, MEMBERS)
    after = catalog_source(CATALOG, [*MEMBERS, N("new.example.")])
    assert records(after) - records(before) == {
        f"{member_id(N('new.example.'))}.zones.catalog.example. 0 IN PTR new.example."
    }
    assert records(before) - records(after) == set()
    removed = catalog_source(CATALOG, MEMBERS[1:])
    assert records(before) - records(removed) == {
        f"{member_id(MEMBERS[0])}.zones.catalog.example. 0 IN PTR example.com."
    }
    assert records(removed) - records(before) == set()


def test_relative_names_are_refused():
    with pytest.raises(ValueError):
        catalog_source(N("catalog", origin=None), MEMBERS)
    with pytest.raises(ValueError):
        catalog_source(CATALOG, [N("example", origin=None)])


def test_path_is_kept_or_names_the_catalog():
    assert catalog_source(CATALOG, [], Path("/x/catalog")).path == Path("/x/catalog")
    assert "catalog.example." in str(catalog_source(CATALOG, []).path)


# -- the records as the rest of aliasd and dnspython use them ----------------


def test_catalog_passes_the_zone_file_rules_and_round_trips(tmp_path):
    source = catalog_source(CATALOG, MEMBERS)
    path = tmp_path / "catalog.zone"
    path.write_text("".join(rrset.to_text() + "\n" for rrset in source.rrsets.values()))
    loaded = load_zone_file(CATALOG, path)
    assert records(loaded) == records(source)
    assert set(loaded.rrsets) == set(source.rrsets)


def test_member_ptrs_behave_like_dnspython_ptrs():
    """The catalog's PTRs hash, compare, render and pickle like parsed ones."""
    source = catalog_source(CATALOG, [N("Example.COM.")])
    (rrset,) = ptrs(source).values()
    built = rrset[0]
    parsed = dns.rdata.from_text(dns.rdataclass.IN, T.PTR, "Example.COM.")
    assert built == parsed and hash(built) == hash(parsed)
    assert built.to_digestable() == parsed.to_digestable()
    assert built.to_wire() == parsed.to_wire()
    assert built.to_text() == "Example.COM."
    assert pickle.loads(pickle.dumps(built)) == parsed
    assert built.replace(target=N("example.org.")).target == N("example.org.")
    with pytest.raises(TypeError):
        built.target = N("example.org.")  # immutable like any rdata
    parsed_set = dns.rrset.from_rdata_list(rrset.name, 0, [parsed])
    assert rrset == parsed_set


def test_catalog_renders_into_messages_with_compression():
    source = catalog_source(CATALOG, MEMBERS)
    response = dns.message.make_response(dns.message.make_query(CATALOG, "AXFR"))
    response.answer.extend(source.rrsets.values())
    wire = response.to_wire()
    back = dns.message.from_wire(wire)
    assert {rr.to_text() for rr in back.answer} == records(source)
    # Names were compressed: much smaller than the records uncompressed.
    uncompressed = io.BytesIO()
    for rrset in source.rrsets.values():
        rrset.to_wire(uncompressed)
    assert len(wire) < len(uncompressed.getvalue())


def test_authority_serves_and_journals_the_catalog():
    """aliasd's serial logic moves the catalog's serial and the journal keeps
    the added PTR, so an IXFR from the old serial is incremental."""
    authority = ZoneAuthority()
    authority.set_sources([catalog_source(CATALOG, MEMBERS)])
    first = authority.versions[CATALOG]
    assert first.serial == 1
    answer = first.lookup(N(f"{member_id(MEMBERS[0])}.zones.catalog.example."), T.PTR)
    assert [rr.to_text() for rr in answer.answer] == [
        f"{member_id(MEMBERS[0])}.zones.catalog.example. 0 IN PTR example.com."
    ]
    authority.set_sources([catalog_source(CATALOG, [*MEMBERS, N("new.example.")])])
    second = authority.versions[CATALOG]
    assert second.serial == 2
    kind, rrsets = ixfr_rrsets(second, authority.journals[CATALOG], 1)
    rrsets = list(rrsets)
    assert kind == "incremental"
    changes = [rr.to_text() for rr in rrsets if rr.rdtype != T.SOA]
    assert changes == [f"{member_id(N('new.example.'))}.zones.catalog.example. 0 IN PTR new.example."]
    # The same members again: no new serial.
    authority.set_sources([catalog_source(CATALOG, [N("new.example."), *MEMBERS])])
    assert authority.versions[CATALOG].serial == 2


def test_building_a_large_catalog_is_fast():
    members = [N(f"zone{i}.example.net.") for i in range(20000)]
    started = time.process_time()
    source = catalog_source(CATALOG, members)
    elapsed = time.process_time() - started
    assert len(source.rrsets) == 20003
    # About 1 s here (4 s for 100,000); the bound catches quadratic work.
    assert elapsed < 10, elapsed


def test_members_changed_in_place_give_the_catalog_built_afresh():
    """A zone created or deleted at runtime changes one record of the
    catalog in place (aliasd.service.reload.CatalogMaker); the result is
    the catalog catalog_source builds for the new members, generations
    (member reset, RFC 9432 5.6) included."""
    catalog = N("catalog.invalid")
    before = catalog_source(catalog, [N("a.test"), N("b.test")])
    after = with_members_changed(before, {N("c.test"): 0, N("b.test"): 1}, {N("a.test"): 0, N("b.test"): 0})
    fresh = catalog_source(catalog, [N("b.test"), N("c.test")], generations={N("b.test"): 1})
    assert records(after) == records(fresh) and after.digest == fresh.digest
    assert f"{member_id(N('b.test'), 1)}.zones.catalog.invalid." in {r.split()[0] for r in records(after)}
    assert member_id(N("b.test"), 1) != member_id(N("b.test"))
    assert with_members_changed(before, {N("A.test"): 0}, {}) is None  # a case variant: built afresh


def test_a_catalog_changed_in_place_has_the_names_of_one_built_whole():
    """Members added and removed in place, down to none and back (the
    catalog's ``zones`` label comes and goes as an empty non-terminal): the
    served names are those of the catalog built whole, and so is its digest."""
    source = catalog_source(CATALOG, [])
    base = ZoneBase.of(source)
    steps = [({N("a.test."): 0}, {}), ({N("b.test."): 0}, {}), ({}, {N("a.test."): 0}),
             ({}, {N("b.test."): 0}), ({N("a.test."): 1}, {})]
    members: dict = {}
    for added, removed in steps:
        changed = with_members_changed(source, added, removed)
        touched = set(changed.records.keys() ^ source.records.keys())
        base, source = base.updated(changed.records, touched), changed
        for member in removed:
            members.pop(member)
        members.update(added)
        whole = catalog_source(CATALOG, sorted(members), generations=members)
        assert (base.empty_non_terminals, set(base.records)) == (ZoneBase.of(whole).empty_non_terminals,
                                                                  set(whole.records))
        assert source.digest == whole.digest
