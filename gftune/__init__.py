"""gftune: a GitOps reconciler and policy-as-code tuning engine for GlassFlow pipelines."""

__version__ = "0.1.0"
