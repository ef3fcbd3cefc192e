"""Dynamic updates (RFC 2136) and the dynamic zones they change,
written back to their files.
"""
