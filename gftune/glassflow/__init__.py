"""Facts about the real GlassFlow system (its API document, statuses, durations, quantities, rules,
topology and metrics), shared by the simulator and the reconciler. No I/O."""
