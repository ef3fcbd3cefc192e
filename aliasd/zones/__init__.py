"""Zone data: master files (with ALIAS) parsed into sources, immutable zone
versions, the registry of served zones, snapshots and the catalog zone.
"""
