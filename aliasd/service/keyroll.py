"""The rollover engine in the running server: its signers, its metric, reloads.

Why a module of its own: aliasd.dnssec.rollover decides key timings and
knows nothing of the authority; this glue hands each step's keys to the
authority as a new Signer (or none, once a zone went insecure), measures a
zone's longest TTL for the retire interval, and gives the engine the
zones, policies and keys of each configuration (start and reload).
"""

from __future__ import annotations

import dns.name
import dns.rdatatype
from twisted.logger import Logger

from aliasd.base.config import Settings
from aliasd.dnssec.keys import KeyStore
from aliasd.dnssec.parent import ParentAgents
from aliasd.dnssec.rollover import ParentView, Rollovers
from aliasd.dnssec.signer import Signer

log = Logger()


def start_rollovers(settings: Settings, authority, db, clock, parent: ParentView | None = None) -> Rollovers:
    """The engine for ``authority``'s signed zones, configured; its parent
    view (a ParentAgents, a service the caller starts and stops with the
    server) is ``.parent``."""

    def apply(zone: dns.name.Name, keys, cds_delete: bool, signed: bool) -> None:
        signers = dict(authority.signers)
        policy = rollovers.policy(zone)
        if signed and policy is not None:
            signers[zone] = Signer(zone, keys, policy.signing, cds_delete)
        else:
            signers.pop(zone, None)
            log.info("zone {zone} is served unsigned from now on", zone=zone.to_text())
        authority.set_signers(signers)

    def max_ttl(zone: dns.name.Name) -> int:
        """The longest TTL the zone serves (RFC 7583 TTLsig; in the step's thread)."""
        version = authority.versions.get(zone)
        if version is None:
            return 0
        return max((r.ttl for r in version.transfer_rrsets() if r.rdtype != dns.rdatatype.RRSIG), default=0)

    if parent is None:  # the parental agents of each zone's policy as the engine holds it (insecure: the kept one)
        parent = ParentAgents(clock, policy_of=lambda zone: rollovers.policy(zone))
    rollovers = Rollovers(clock, db, KeyStore(settings.server.state_dir / "keys"), apply, parent, max_ttl)
    configure_rollovers(rollovers, settings, authority.signers)
    return rollovers


def configure_rollovers(rollovers: Rollovers, settings: Settings, signers: dict) -> None:
    """The zones under a named policy (or "insecure") and their keys, to the engine."""
    policies = {}
    for zone in settings.signed_zones:  # (policy_of: None for the others)
        policy = settings.policy_of(zone)
        if policy is not None and not policy.builtin:
            policies[zone.name] = policy
    rollovers.configure(policies, {z: signers[z].keys for z in policies if z in signers})


def register_rollover_gauge(stats, rollovers: Rollovers) -> None:
    stats.gauge(
        "aliasd_dnssec_next_key_event_seconds",
        "Seconds until each zone's next key event (a rollover's next step, or the next one's start).",
        lambda: [({"zone": zone.to_text()}, round(seconds, 3))
                 for zone, seconds in sorted(rollovers.next_event_seconds().items())],
    )
