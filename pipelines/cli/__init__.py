"""``twinflow <verb>``: the command line, one module per verb family, every config flag through flags.py.

``python -m twinflow.pipelines.cli`` and the ``twinflow`` console script both run :func:`entry`.
"""

from twinflow.pipelines.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
