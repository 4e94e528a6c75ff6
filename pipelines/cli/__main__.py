"""``python -m twinflow.pipelines.cli``: the same command line as ``twinflow``."""

from twinflow.pipelines.cli.main import entry

entry()
