"""Feeding secondaries: AXFR/IXFR rendering, the journal of differences
between versions and its files, serial numbering, and NOTIFY.
"""
