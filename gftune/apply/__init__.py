"""Carrying out a plan: the pure lifecycle core (steps, decisions, staleness, exit codes), the
executor at the edge, the run journal, pipeline locks, verification verdicts and reports.
"""
