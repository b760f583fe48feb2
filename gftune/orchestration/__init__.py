"""The wiring of each command: which edges (files, the GlassFlow API, metrics, git) feed which part of
the functional core, in which order.

The commands in :mod:`gftune.commands` parse flags, print and choose exit codes; the core (desired
state, plan, policies, apply's lifecycle) takes everything it needs as arguments and does no I/O.
The modules here are where the two meet: :mod:`~gftune.orchestration.desired` loads the repository,
:mod:`~gftune.orchestration.plan` reads live state and builds the plan, and
:mod:`~gftune.orchestration.policies` feeds metric readings to the policy evaluation.
"""
