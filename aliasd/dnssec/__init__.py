"""Signing the flattened view: key files and their timing, the signer
(RRSIGs, NSEC/NSEC3 chains) and RRSIG computation from packed wire.
"""
