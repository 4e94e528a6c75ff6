"""``twinflow <verb>``: the command line, one module per verb (``main.py`` registers them), every config flag
through ``flags.py``. ``python -m twinflow.pipelines.cli`` and the ``twinflow`` console script run
:func:`twinflow.pipelines.cli.main.entry`."""
