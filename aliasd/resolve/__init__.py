"""ALIAS targets to addresses: the scheduler, upstream resolvers, the
dependency graph from targets to zones, and serial-rate damping.
"""
