"""Lightning trainer on real Transform output: data module, twin model, training run, ONNX export."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import trainer_fn_args
from twinflow.core.architectures import ARCHITECTURES, architecture
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import ONNX_FILE, TRANSFORM_GRAPH_DIR
from twinflow.trainers.base import BRIGHTNESS_DELTA
from twinflow.trainers.formats.onnx_model import OnnxImageClassifier
from twinflow.trainers.keras import data as keras_data
from twinflow.trainers.keras import model as keras_twin
from twinflow.trainers.lightning.data import TransformedDataModule
from twinflow.trainers.lightning.export import export_onnx
from twinflow.trainers.lightning.model import TwinClassifier, augment, build_model
from twinflow.trainers.lightning.parameters import count_parameters

CLASSES = ["circle", "square", "stripes"]


@pytest.fixture(scope="module")
def data_module(transform_outputs: dict, tmp_path_factory: pytest.TempPathFactory) -> TransformedDataModule:
    fn_args = trainer_fn_args(transform_outputs, tmp_path_factory.mktemp("data_module"))
    module = TransformedDataModule(
        fn_args, tft.TFTransformOutput(fn_args.transform_output), transform_outputs["config"].training
    )
    module.setup("fit")
    return module


def _keras_split(transform_outputs: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    dataset = keras_data.input_fn(
        transform_outputs["files"][split],
        transform_outputs["data_accessor"],
        tft.TFTransformOutput(transform_outputs["transform_graph"]),
        TrainingConfig(batch_size=50, augment=()),
        training=False,
    )
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact pairwise L2 distances between two stacks of images."""
    return torch.cdist(a.flatten(1), b.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")


@pytest.mark.parametrize("split", ["train", "eval"])
def test_data_module_holds_what_keras_reads_as_nchw_tensors(
    data_module: TransformedDataModule, transform_outputs: dict, split: str
) -> None:
    images, labels = data_module.train if split == "train" else data_module.eval
    keras_images, keras_labels = _keras_split(transform_outputs, split)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (len(keras_labels), 1, 28, 28) and images.is_contiguous()
    np.testing.assert_array_equal(labels.numpy(), keras_labels)
    np.testing.assert_array_equal(images.permute(0, 2, 3, 1).numpy(), keras_images)


def test_train_batches_are_a_fresh_permutation_each_epoch(data_module: TransformedDataModule) -> None:
    images, labels = data_module.train
    batches = data_module.train_dataloader()
    epochs = [list(batches), list(batches)]
    for epoch in epochs:
        assert len(epoch) == len(batches) == -(-len(labels) // 16)
        epoch_images = torch.cat([x for x, _ in epoch])
        epoch_labels = torch.cat([y for _, y in epoch])
        assert sorted(epoch_labels.tolist()) == sorted(labels.tolist())
        # every image arrives once, with its own label
        order = [int(i) for i in _distances(epoch_images, images).argmin(dim=1)]
        assert sorted(order) == list(range(len(labels)))
        assert torch.equal(labels[order], epoch_labels)
    assert not torch.equal(torch.cat([y for _, y in epochs[0]]), torch.cat([y for _, y in epochs[1]]))
    evaluation = list(data_module.val_dataloader())
    assert torch.equal(torch.cat([y for _, y in evaluation]), data_module.eval[1])  # evaluation order is stable


def _shift_of_plain_or_mirror(original: np.ndarray, changed: np.ndarray, width_axis: int) -> tuple[bool, float]:
    """(flipped?, brightness shift) when ``changed`` is a constant shift of the image or its mirror, else raise."""
    for flipped, source in ((False, original), (True, np.flip(original, axis=width_axis))):
        shift = float((changed - source).mean())
        if np.abs(changed - source - shift).max() < 1e-5:
            return flipped, shift
    raise AssertionError("augmented image is neither a shifted copy nor a shifted mirror")


def test_augment_is_the_keras_augmentation_on_nchw() -> None:
    nhwc = tf.random.stateless_normal([400, 5, 6, 1], seed=[1, 2]).numpy()
    torch_out = augment(torch.from_numpy(nhwc).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    keras_out = keras_twin.augment(tf.constant(nhwc), seed=3).numpy()
    for out in (torch_out, keras_out):
        results = [_shift_of_plain_or_mirror(a, b, width_axis=1) for a, b in zip(nhwc, out, strict=True)]
        flips = np.mean([flipped for flipped, _ in results])
        shifts = np.array([shift for _, shift in results])
        assert 0.4 < flips < 0.6
        assert np.abs(shifts).max() <= BRIGHTNESS_DELTA + 1e-6 and np.abs(shifts).mean() > BRIGHTNESS_DELTA / 3


@pytest.mark.parametrize("augmentations", [("flip",), ("brightness",), ()])
def test_each_augmentation_list_does_in_torch_what_it_does_in_keras(augmentations: tuple[str, ...]) -> None:
    nhwc = tf.random.stateless_normal([200, 5, 6, 1], seed=[1, 2]).numpy()
    torch_out = augment(torch.from_numpy(nhwc).permute(0, 3, 1, 2), augmentations).permute(0, 2, 3, 1).numpy()
    keras_out = keras_twin.augment(tf.constant(nhwc), seed=3, augmentations=augmentations).numpy()
    for out in (torch_out, keras_out):
        results = [_shift_of_plain_or_mirror(a, b, width_axis=1) for a, b in zip(nhwc, out, strict=True)]
        flips = np.mean([flipped for flipped, _ in results])
        shifts = np.abs([shift for _, shift in results])
        assert (0.3 < flips < 0.7) if "flip" in augmentations else flips == 0
        assert (shifts.max() > BRIGHTNESS_DELTA / 2) if "brightness" in augmentations else shifts.max() < 1e-6


def test_augment_only_while_training(data_module: TransformedDataModule) -> None:
    batch = next(iter(data_module.val_dataloader()))
    out = data_module.on_after_batch_transfer(batch, 0)  # no trainer attached: not training
    assert torch.equal(out[0], batch[0])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(("size", "classes"), [(28, 10), (28, 3), (32, 5)])
def test_twin_parameters_match_keras_layer_by_layer(name: str, size: int, classes: int) -> None:
    keras_model = keras_twin.build_model(name, size, 1, classes)
    torch_model = build_model(name, size, 1, classes)
    keras_counts = [layer.count_params() for layer in keras_model.layers if layer.count_params()]
    torch_counts = [sum(p.numel() for p in m.parameters()) for m in torch_model if any(True for _ in m.parameters())]
    assert torch_counts == keras_counts
    assert count_parameters(torch_model) == keras_model.count_params()
    spec = architecture(name)
    assert len(torch_counts) == len(spec.conv_filters) + len(spec.dense_units) + 1


def test_twin_cnn_has_the_reference_parameter_count() -> None:
    assert count_parameters(build_model("twin_cnn", 28, 1, 10)) == 421_642


def test_the_default_architecture_is_the_wide_twin() -> None:
    assert TrainingConfig().architecture == "twin_cnn_wide"
    assert count_parameters(build_model("twin_cnn_wide", 28, 1, 10)) == 1_630_090


def test_optimizers_are_configured_like_keras() -> None:
    adam = TwinClassifier("tiny_cnn", 28, 1, 3, optimizer="adam", learning_rate=0.01).configure_optimizers()
    assert isinstance(adam, torch.optim.Adam)
    assert adam.defaults["eps"] == pytest.approx(1e-7) and adam.defaults["lr"] == pytest.approx(0.01)
    sgd = TwinClassifier("tiny_cnn", 28, 1, 3, optimizer="sgd", learning_rate=0.1).configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == pytest.approx(0.9)


def test_run_fn_writes_serving_model_card_and_logs(lightning_trained, transform_outputs: dict) -> None:
    serving = Path(lightning_trained.serving_model_dir)
    card = json.loads((serving / "model.json").read_text())
    assert (card["framework"], card["format"], card["artifact"]) == ("lightning", "onnx", ONNX_FILE)
    assert card["class_names"] == CLASSES and card["architecture"] == "tiny_cnn"
    assert card["parameters"] == keras_twin.build_model("tiny_cnn", 28, 1, 3).count_params()
    assert card["input_contract"]["transformed"] == {"name": "image_xf", "dtype": "float32", "shape": [28, 28, 1]}
    training = card["training"]
    assert training["config"]["epochs"] == 6 and training["config"]["architecture"] == "tiny_cnn"
    assert 1 <= training["epochs_run"] <= 6 and training["device"] == "CPU"
    assert training["images_per_second"] > 0 and training["first_epoch_images_per_second"] > 0
    assert training["seconds"] > 0
    for split in ("train", "eval"):
        assert 0.5 <= training[split]["accuracy"] <= 1 and 0 < training[split]["loss"] < 1.1  # learned past chance
    # The size is the network's file alone, as the variants table measures it: not the card, not transform_graph/.
    assert card["size_bytes"] == (serving / ONNX_FILE).stat().st_size
    graph = Path(transform_outputs["transform_graph"])
    copied = {str(p.relative_to(serving / TRANSFORM_GRAPH_DIR)) for p in (serving / TRANSFORM_GRAPH_DIR).rglob("*")}
    assert copied == {str(p.relative_to(graph)) for p in graph.rglob("*")}

    logs = Path(lightning_trained.model_run_dir, "logs")
    (events,) = logs.glob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(scalars)
    assert len(list((logs / "checkpoints").glob("*.ckpt"))) == 1


def test_clean_eval_metrics_are_those_of_the_exported_model(lightning_trained, data_module) -> None:
    card = json.loads(Path(lightning_trained.serving_model_dir, "model.json").read_text())
    images, labels = data_module.eval
    model = OnnxImageClassifier(lightning_trained.serving_model_dir)
    probabilities = model.predict_transformed(images.permute(0, 2, 3, 1).numpy())
    accuracy = float((probabilities.argmax(axis=1) == labels.numpy()).mean())
    loss = float(-np.log(probabilities[np.arange(len(labels)), labels.numpy()]).mean())
    assert card["training"]["eval"]["accuracy"] == pytest.approx(accuracy)
    assert card["training"]["eval"]["loss"] == pytest.approx(loss, rel=1e-4)


def _trained_module(lightning_trained) -> TwinClassifier:
    """The weights run_fn exported: its best checkpoint (Keras's restore_best_weights twin)."""
    (path,) = Path(lightning_trained.model_run_dir, "logs", "checkpoints").glob("*.ckpt")
    module = TwinClassifier("tiny_cnn", 28, 1, 3)
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return module.eval()


def test_exported_onnx_matches_the_live_module(lightning_trained, data_module: TransformedDataModule) -> None:
    session = ort.InferenceSession(str(Path(lightning_trained.serving_model_dir, ONNX_FILE)))
    (input_,) = session.get_inputs()
    (output,) = session.get_outputs()
    assert (input_.name, input_.type, input_.shape[1:]) == ("image_xf", "tensor(float)", [28, 28, 1])
    assert (output.name, output.shape[1:]) == ("probabilities", [3])
    module = _trained_module(lightning_trained)
    images = data_module.eval[0]
    for batch in (images[:1], images[:7], images):  # the batch axis is dynamic
        with torch.no_grad():
            expected = torch.softmax(module(batch), dim=-1).numpy()
        (got,) = session.run(None, {"image_xf": batch.permute(0, 2, 3, 1).numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_export_onnx_of_twin_cnn_matches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("twin_cnn", 28, 1, 10).eval()
    export_onnx(model, 28, 1, str(tmp_path / "m.onnx"))
    nhwc = torch.randn(5, 28, 28, 1)
    with torch.no_grad():
        expected = torch.softmax(model(nhwc.permute(0, 3, 1, 2)), dim=-1).numpy()
    (got,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(["probabilities"], {"image_xf": nhwc.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_serving_model_predicts_raw_images_through_the_transform_graph(
    lightning_trained, transform_outputs: dict, tiny_folders: Path
) -> None:
    model = OnnxImageClassifier(lightning_trained.serving_model_dir)
    assert model.class_names == CLASSES
    files = [p for name in CLASSES for p in sorted((tiny_folders / "test" / name).glob("*.png"))]
    image_bytes = [p.read_bytes() for p in files]
    transformed = model.transform_image_bytes(image_bytes)
    assert transformed.shape == (45, 28, 28, 1) and transformed.dtype == np.float32
    # Serving preprocessing is the pipeline's: each image matches one of Transform's own test outputs.
    pipeline_test, _ = _keras_split(transform_outputs, "test")
    distances = _distances(torch.from_numpy(transformed), torch.from_numpy(pipeline_test))
    assert float(distances.min(dim=1).values.max()) < 1e-4
    probabilities = model.predict_image_bytes(image_bytes)
    examples = [
        tf.train.Example(
            features=tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))})
        ).SerializeToString()
        for b in image_bytes
    ]
    np.testing.assert_allclose(model.predict_examples(examples), probabilities, atol=1e-6)
    truth = np.array([CLASSES.index(p.parent.name) for p in files])
    assert (probabilities.argmax(axis=1) == truth).mean() >= 0.5


def test_a_diverging_loss_stops_training_and_writes_no_model(transform_outputs: dict, tmp_path: Path) -> None:
    from twinflow.core.errors import TrainingDivergedError
    from twinflow.trainers.lightning.train import run_fn

    fn_args = trainer_fn_args(transform_outputs, tmp_path, learning_rate=1e12, optimizer="sgd", epochs=2)
    with pytest.raises(TrainingDivergedError, match=r"lightning training diverged: the loss is (nan|inf) in epoch 1"):
        run_fn(fn_args)
    assert not Path(fn_args.serving_model_dir, "model.json").exists()
