"""The plan: canonical forms of both sides, the field diff, the plan model (entries, lifecycle steps,
fingerprints) and its renderings. Pure data; no I/O.
"""
