"""Exit codes: the contract of design.md §3. CI jobs branch on these; never renumber them."""

OK = 0  # valid / no changes / applied and verified / in sync
ERROR = 1  # invalid input, unreachable server, unexpected failure
CHANGES = 2  # plan or drift found changes; tune has proposals
BLOCKED = 3  # a change that must not be applied (immutable field, escalation, failed guard)
VERIFY_FAILED = 4  # apply: verification failed and the change was reverted
INCONCLUSIVE = 5  # apply: verification inconclusive, change kept
