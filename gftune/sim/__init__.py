"""gftune's GlassFlow API and metrics simulator (``gftune sim``). See ``docs/simulator.md``.

Public API: :class:`Simulator` (start/stop, ``api_url``, ``metrics_url``, ``truth()``,
``add_fault()``), :class:`ScenarioError`, :func:`available_scenarios`.
"""

from gftune.sim.scenarios import ScenarioError
from gftune.sim.scenarios import available as available_scenarios
from gftune.sim.simulator import Simulator

__all__ = ["ScenarioError", "Simulator", "available_scenarios"]
