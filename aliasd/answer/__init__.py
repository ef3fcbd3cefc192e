"""Wire in, answer out: query handling, the fast path and direct answers,
CHAOS status, and the transfer and update request handlers.
"""
