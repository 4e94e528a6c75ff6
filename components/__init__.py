"""Custom TFX components (component.py + executor.py each); they use core, model_store and trainers' model loaders
(the Evaluator compares a candidate with the served model), never serving or pipelines."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
