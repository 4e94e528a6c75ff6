"""The ``run_fn`` every framework's trainer follows, and what the trainers share beyond the core contracts.

A trainer is a :class:`TwinTrainer`: the same steps in the same order in every framework (read the
Transform output, build the twin, fit, evaluate both splits on clean passes, export for serving,
write the model card), so the twins read as twins and a third framework fills in the same six
methods (trainers/keras/train.py, trainers/lightning/train.py, tests/dummy_framework/train.py).
Nothing here imports TensorFlow at import time (data-parallel Lightning processes unpickle modules
that import this one).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from twinflow.core.config import TrainingConfig
from twinflow.core.contract import CLASS_VOCAB_NAME, IMAGE_XF_KEY, SERVING_DIR_KEY, TRAINING_CONFIG_KEY
from twinflow.core.errors import ConfigError, TrainingDivergedError
from twinflow.core.model_card import (
    InputContract,
    ModelCard,
    OnnxGraph,
    SplitMetrics,
    TensorSpec,
    TrainingPhase,
    TrainingSummary,
    WeightsRecord,
    artifact_size,
    write_model_card,
)
from twinflow.trainers.backbones import mobilenet_v2_spec as spec
from twinflow.trainers.stopwatch import Stopwatch

if TYPE_CHECKING:
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import FnArgs

# Augmentation shared by both trainers (train split only), each named in TrainingConfig.augment:
# "flip": random horizontal flip with p=0.5; "brightness": an additive shift drawn
# uniformly from [-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA].
BRIGHTNESS_DELTA = 0.2
PIXEL_HALF_RANGE = 127.5  # a backbone's pixels 0..255 are scaled by its first layer to [-1, 1]: 127.5 levels per unit


def bn_momentum(from_scratch: bool) -> float:
    """A backbone's batch-norm momentum (Keras's convention): as published, or Keras's layer default from a seeded
    start, where the running statistics must catch up from their initial values (backbones.mobilenet_v2_spec)."""
    return spec.FROM_SCRATCH_BN_MOMENTUM if from_scratch else spec.KERAS_BN_MOMENTUM


def brightness_delta(config: TrainingConfig) -> float:
    """The brightness shift's bound in the units the trainer's images are in: normalised images, or a backbone's
    raw pixels (the same shift once the model's first layer has scaled them)."""
    return BRIGHTNESS_DELTA * (PIXEL_HALF_RANGE if config.backbone else 1.0)


def training_config(custom_config: Mapping[str, Any] | None) -> TrainingConfig:
    """The TrainingConfig a pipeline passed through TFX ``custom_config``."""
    return TrainingConfig.from_dict((custom_config or {}).get(TRAINING_CONFIG_KEY, {}))


ALL_UNITS = 19  # a backbone's freezing units (stem, 17 blocks, top: backbones.mobilenet_v2_spec.NUM_UNITS)


@dataclass(frozen=True)
class Phase:
    """One fit of the twin: which backbone units train, for how long, at which rate (the same in both twins)."""

    name: str
    trainable_units: int
    epochs: int
    learning_rate: float
    train_batch_norm: bool = False

    def record(self) -> TrainingPhase:
        return TrainingPhase(
            name=self.name, trainable_units=self.trainable_units, epochs=self.epochs, learning_rate=self.learning_rate
        )


def training_phases(config: TrainingConfig) -> list[Phase]:
    """A twin CNN, or a backbone from a seeded start, trains everything in one phase. A pretrained backbone trains
    its head with the backbone frozen (in inference mode: batch norm on its running statistics), then, with
    ``fine_tune_blocks`` and ``fine_tune_epochs``, its top blocks too at ``fine_tune_lr_factor`` of the rate."""
    if not config.backbone or config.weights == "none":
        return [Phase("all layers", ALL_UNITS, config.epochs, config.learning_rate, train_batch_norm=True)]
    phases = [Phase("head (backbone frozen)", 0, config.epochs, config.learning_rate)]
    if config.fine_tune_blocks and config.fine_tune_epochs:
        rate = config.learning_rate * config.fine_tune_lr_factor
        phases.append(
            Phase(f"top {config.fine_tune_blocks} blocks", config.fine_tune_blocks, config.fine_tune_epochs, rate)
        )
    return phases


def weights_source(weights: str, framework: str, serving_dir: str | None) -> tuple[str, str | None]:
    """``--weights`` as a source apply_weights reads, and a note: ``served`` is this framework's served version
    (``served:<framework>`` another's), found in the serving folder when training starts; nothing served yet
    means a seeded start, said so."""
    if weights != "served" and not weights.startswith("served:"):
        return weights, None
    owner = weights.partition(":")[2] or framework
    from twinflow.core import fs
    from twinflow.model_store.layout import served_version

    if not serving_dir:
        raise ConfigError(f"--weights {weights}: the trainer was given no serving folder to read it from")
    version = served_version(fs.join(serving_dir, owner))
    if version is None:
        return "none", f"nothing of {owner} served in {serving_dir} yet: a seeded start"
    return version.path, f"{owner}'s served version {version.number}"


def parse_class_vocabulary(lines: list[str | bytes]) -> list[str]:
    """Turn the ``index:name`` vocabulary into names ordered by label index.

    Raises when labels are not exactly 0..K-1 with one name each, which would mean the
    label and label_name columns disagree.
    """
    by_index: dict[int, str] = {}
    for raw in lines:
        entry = raw.decode() if isinstance(raw, bytes) else raw
        index_text, _, name = entry.partition(":")
        index = int(index_text)
        if index in by_index and by_index[index] != name:
            raise ValueError(f"label {index} has two names in the data: {by_index[index]!r} and {name!r}")
        by_index[index] = name
    expected = list(range(len(by_index)))
    if sorted(by_index) != expected:
        raise ValueError(
            f"training labels must be 0..{len(by_index) - 1} with every class present; got {sorted(by_index)}"
        )
    return [by_index[i] for i in expected]


def check_finite_loss(framework: str, epoch: int, loss: float, config: TrainingConfig) -> None:
    """Stop training on a NaN or infinite loss: such a model must never reach evaluation or serving."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"{framework} training diverged: the loss is {loss} in epoch {epoch} "
            f"(learning rate {config.learning_rate}, optimizer {config.optimizer}); no model was written. "
            "Lower --learning-rate and run again."
        )


def scheduled_learning_rate(base: float, epoch: int, epochs: int, schedule: str) -> float:
    """The learning rate of ``epoch`` (0-based) of ``epochs``: both trainers set it at each epoch's start.

    "cosine" falls from ``base`` in the first epoch along half a cosine to a tenth of ``base``
    in the last; "constant" keeps ``base``.
    """
    if schedule == "constant" or epochs <= 1:
        return base
    return base * (0.55 + 0.45 * math.cos(math.pi * epoch / (epochs - 1)))


def split_metrics(loss: float, accuracy: float) -> SplitMetrics:
    return SplitMetrics(loss=float(loss), accuracy=float(accuracy))


def input_contract(config: TrainingConfig) -> InputContract:
    return InputContract(
        raw={"image": "encoded image bytes (JPEG, PNG, GIF, BMP)", "example": "serialized tf.Example with 'image'"},
        transformed=TensorSpec(
            name=IMAGE_XF_KEY, dtype="float32", shape=[config.image_size, config.image_size, config.channels]
        ),
    )


@dataclass(frozen=True)
class Exported:
    """What a trainer's export wrote into the serving folder, in the model card's words."""

    format: str  # saved_model, onnx, tflite
    artifact: str  # the model file (or "." for a SavedModel folder), relative to the folder
    signatures: list[str] = field(default_factory=list)
    onnx: OnnxGraph | None = None
    transform_graph: str | None = None  # a copy of the Transform graph beside the artifact, if any


class TwinTrainer(abc.ABC):
    """One training run of one framework's twin, called by TFX's Trainer as ``run_fn(fn_args)``.

    :meth:`run` is the skeleton; a framework fills in the steps. The run's state lives on the
    instance (one instance per run), so each step reads what the one before it made.
    """

    framework: ClassVar[str]
    architecture: str | None = None  # what the model card names; by default the config's architecture

    def __init__(self, fn_args: FnArgs):
        import tensorflow_transform as tft

        self.fn_args = fn_args
        self.config = training_config(fn_args.custom_config)
        self.transform_output: tft.TFTransformOutput = tft.TFTransformOutput(fn_args.transform_output)
        self.class_names = parse_class_vocabulary(self.transform_output.vocabulary_by_name(CLASS_VOCAB_NAME))
        self.stopwatch = Stopwatch()
        self.input_mode = "memory"  # or "stream": the Transform output was over the memory budget
        self.phases = training_phases(self.config)
        self.weights_source, self.weights_note = weights_source(
            self.config.weights, self.framework, (fn_args.custom_config or {}).get(SERVING_DIR_KEY)
        )
        self.weights: WeightsRecord | None = None  # set by build: where the starting weights came from
        self.user_module = None  # --model-module: your own builders instead of twinflow's twins
        if self.config.model_module:
            from twinflow.trainers.user_model import load_user_module

            self.user_module = load_user_module(self.config.model_module)
            self.architecture = f"module {self.user_module.name}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.image_size, self.config.image_size, self.config.channels

    def run(self) -> ModelCard:
        """data → build → fit → evaluate → export → model card, the same in every framework."""
        self.seed()
        self.read_data()
        parameters = self.build()
        device = self.fit()
        train, evaluation = self.evaluate()
        path = self.fn_args.serving_model_dir
        exported = self.export(path)
        card = ModelCard(
            framework=self.framework,
            format=exported.format,
            artifact=exported.artifact,
            signatures=exported.signatures,
            onnx=exported.onnx,
            transform_graph=exported.transform_graph,
            class_names=self.class_names,
            input_contract=input_contract(self.config),
            architecture=self.architecture or self.config.architecture,
            parameters=parameters,
            weights=self.weights,
            model_module=(
                {"spec": self.user_module.spec, "sha256": self.user_module.sha256} if self.user_module else None
            ),
            training=TrainingSummary(
                config=self.config,
                device=device,
                epochs_run=len(self.stopwatch.epochs),
                **self.stopwatch.summary(),
                input_mode=self.input_mode,
                train=train,
                eval=evaluation,
                phases=[phase.record() for phase in self.phases] if self.config.backbone else [],
            ),
            size_bytes=artifact_size(path, exported.artifact),
        )
        write_model_card(path, card)
        return card

    @abc.abstractmethod
    def seed(self) -> None:
        """Seed every generator the framework draws from with ``config.seed``."""

    @abc.abstractmethod
    def read_data(self) -> None:
        """Open the train and eval splits of the Transform output (held under the memory budget, else streamed:
        set ``input_mode``)."""

    @abc.abstractmethod
    def build(self) -> int:
        """Build the twin for ``class_names`` with its starting weights (:meth:`start_from`); return its parameter
        count as Keras counts it."""

    def start_from(self, weights: WeightsRecord) -> None:
        """Record where the twin's starting weights came from (trainers.backbones.weights.starting_weights)."""
        self.weights = weights
        print(f"[{self.framework}] starting weights: {_words(weights)}", flush=True)

    @abc.abstractmethod
    def fit(self) -> str:
        """Train, feeding ``stopwatch`` per epoch and stopping on a non-finite loss; return the device, in words."""

    @abc.abstractmethod
    def evaluate(self) -> tuple[SplitMetrics, SplitMetrics]:
        """Loss and accuracy of a clean pass (no augmentation, no dropout) over the train and the eval split."""

    @abc.abstractmethod
    def export(self, path: str) -> Exported:
        """Write the serving model (Transform graph included or beside it) into ``path``."""


def _words(weights: WeightsRecord) -> str:
    where = weights.file or weights.source
    head = "" if weights.head == "from the source" else f"; head {weights.head}"
    note = f" ({weights.note})" if weights.note else ""
    return f"{weights.kind} from {where}{head}{note}"
