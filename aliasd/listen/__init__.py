"""Sockets: UDP, TCP and TLS transports, and response rate limiting.
"""
