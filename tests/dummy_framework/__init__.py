"""A third framework for the tests: softmax regression in Keras, one folder plus one registry entry.

It has the five files every framework has (model, data, train, export, optimize; see trainers/keras/ and
trainers/lightning/): it reads the same Transform output and writes the same model card and serving export,
so the pipeline, the Evaluator, the report and the server take it like the twins.
"""

from twinflow.core.contract import SERVING_EXAMPLES_SIGNATURE
from twinflow.core.registry import FrameworkPlugin

# The one registry entry (tests/test_registry.py adds it to twinflow.core.registry.FRAMEWORKS).
PLUGIN = FrameworkPlugin(
    name="dummy",
    run_fn="tests.dummy_framework.train.run_fn",
    signature_name=SERVING_EXAMPLES_SIGNATURE,
    optimize_fn="tests.dummy_framework.optimize.make_variant",
)
