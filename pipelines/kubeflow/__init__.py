"""Deploy the one pipeline to Kubeflow Pipelines: compile (compiler.py), the spec file (specfile.py), submit and
schedule (endpoint.py); the verbs are pipelines/cli/compile.py, submit.py and schedule.py."""
