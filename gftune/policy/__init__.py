"""Tuning policies: the policy language and its evaluation over metric readings, the signal library,
one-step sizing (``scale_to_fit``), the always-on guards, and the write-back of proposals.
"""
