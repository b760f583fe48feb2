"""The policy files of a repository, parsed once.

:func:`check_policies` runs right after the repository is loaded: it parses every policy file with
the policy language (:func:`gftune.policy.language.parse_policy_file`), keeps the result on the file
(``PolicyFile.parsed``) and adds what the language finds wrong as located problems, unless the
schema already said it for the same place. :func:`load_policies` hands the parsed policies to the
evaluation without parsing them again.
"""

from __future__ import annotations

from gftune.desired.problems import has_errors, sorted_problems
from gftune.desired.repo import DesiredState
from gftune.desired.validate import internal_error_problem, related_paths
from gftune.policy.language import Policy, parse_policy_file


def check_policies(state: DesiredState) -> None:
    """Parse every policy file of ``state`` and add the policy language's findings to its problems."""
    for policy_file in state.policies:
        if not isinstance(policy_file.doc, dict):
            continue  # empty or not a mapping: the loader already said so
        try:
            policy_file.parsed, found = parse_policy_file(policy_file)
        except Exception as exc:  # a bug in the language must not end in a traceback
            policy_file.parsed, found = None, [internal_error_problem(policy_file.file, exc)]
        reported = [p.json_path for p in state.problems if p.file == policy_file.file]
        found = [p for p in found if not any(related_paths(p.json_path, other) for other in reported)]
        state.problems += found
        if has_errors(found) or policy_file.parsed is None:
            policy_file.valid = False
    state.problems[:] = sorted_problems(state.problems)


def load_policies(state: DesiredState) -> tuple[list[Policy], list[str]]:
    """The repository's valid policies, parsed; invalid ones are skipped with a note (validate reports them)."""
    policies: list[Policy] = []
    notes: list[str] = []
    for policy_file in state.policies:
        if not policy_file.valid:
            notes.append(f"{policy_file.file}: invalid policy skipped (see gftune validate)")
            continue
        if policy_file.parsed is None:  # loaded without the checks (load_repo(validate=False))
            policy_file.parsed, problems = parse_policy_file(policy_file)
            if policy_file.parsed is None:
                notes.append(f"{policy_file.file}: invalid policy skipped: {problems[0].message}")
                continue
        policies.append(policy_file.parsed)
    return policies, notes
