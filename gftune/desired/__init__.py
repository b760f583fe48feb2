"""The desired state: a git repository of pipeline, policy and gftune.yaml files, loaded with
locations and validated (schema, GlassFlow's API rules, gftune's rules).
"""
