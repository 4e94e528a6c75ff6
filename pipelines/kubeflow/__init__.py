"""Deploy the one pipeline to Kubeflow Pipelines: compile (spec.py), submit and schedule (endpoint.py), CLI (cli.py)."""
