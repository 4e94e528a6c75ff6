"""How much the Lightning loop costs over a bare torch loop, on Fashion-MNIST-shaped tensors.

Both loops train the twin CNN on the same in-memory tensors with the same augmentation and
a validation pass per epoch, and report images/s the way the trainers do (trainers.stopwatch.Stopwatch:
the first epoch excluded). Needs torch and Lightning only, so it also runs where TensorFlow
is absent (e.g. a GPU machine)::

    python bench/lightning_loop.py --images 12000 --epochs 3
    python bench/lightning_loop.py --wait-policy default   # OpenMP's spin-waiting, for comparison
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--architecture", default="twin_cnn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loops", default="raw,lightning", help="comma-separated: raw, lightning")
    parser.add_argument(
        "--wait-policy",
        choices=["passive", "default"],
        default="passive",
        help="passive: what bootstrap() sets; default: torch imported first, so OpenMP keeps its spin-wait",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.wait_policy == "default":
        import torch

    import torch

    from twinflow.core.config import TrainingConfig
    from twinflow.trainers.lightning import data as lightning_data
    from twinflow.trainers.lightning import export as lightning_export
    from twinflow.trainers.lightning import model as lightning_model
    from twinflow.trainers.lightning import train as lightning_train
    from twinflow.trainers.stopwatch import Stopwatch

    torch.manual_seed(0)
    val_images = max(args.images // 6, 1)
    # Learnable labels that a horizontal flip keeps: which of the top and bottom halves are bright.
    images = torch.randn(args.images + val_images, 1, 28, 28)
    labels = images[:, 0, :14].mean(dim=(1, 2)).gt(0).long() + 2 * images[:, 0, 14:].mean(dim=(1, 2)).gt(0)
    train, evaluation = (images[: args.images], labels[: args.images]), (images[args.images :], labels[args.images :])

    class Data(lightning_data.TensorDataModule):
        def load_splits(self) -> tuple[lightning_data.Split, lightning_data.Split]:
            return train, evaluation

    results = []
    for loop in args.loops.split(","):
        stopwatch = Stopwatch()
        module = lightning_model.TwinClassifier(args.architecture, 28, 1, 4)
        if loop == "raw":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            model, optimizer = module.model.to(device), module.configure_optimizers()
            batches = lightning_data.InMemoryBatches(*train, args.batch_size, shuffle=True)
            for _ in range(args.epochs):
                stopwatch.start_epoch()
                model.train()
                for x, y in batches:
                    x, y = lightning_model.augment(x.to(device)), y.to(device)
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    stopwatch.add_images(len(y))
                stopwatch.end_training_steps()
                lightning_train.evaluate_split(model, evaluation, device)
                stopwatch.end_epoch()
            accuracy = lightning_train.evaluate_split(model, evaluation, device)[1]
        else:
            with tempfile.TemporaryDirectory() as logs:
                config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, architecture=args.architecture)
                trainer, checkpoint = lightning_train.make_trainer(config, logs, stopwatch)
                device = trainer.strategy.root_device
                trainer.fit(module, datamodule=Data(args.batch_size, augment=config.augment, seed=0))
                lightning_train.restore_best(module, checkpoint)
                accuracy = lightning_train.evaluate_split(module.model.to(device), evaluation, device)[1]
                onnx_path = Path(logs, "m.onnx")
                lightning_export.export_onnx(module.model, 28, 1, str(onnx_path))
                onnx_error = _onnx_error(module.model, onnx_path)
        row = {
            "loop": loop,
            "device": lightning_train.device_name(device),
            "threads": torch.get_num_threads(),
            "wait_policy": args.wait_policy,
            **stopwatch.summary(),
            "epoch_images_per_second": [round(i / t) for i, _, t in stopwatch.epochs],
            "eval_accuracy": round(accuracy, 4),
        }
        if loop == "lightning":
            row["onnx_max_abs_error"] = onnx_error
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _onnx_error(model, path: Path) -> float:
    """Largest |ONNX Runtime - torch| over a random NHWC batch (the export runs on the CPU)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    nhwc = torch.randn(33, 28, 28, 1)
    model = model.to("cpu").eval()
    with torch.no_grad():
        expected = torch.softmax(model(nhwc.permute(0, 3, 1, 2)), dim=-1).numpy()
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image_xf": nhwc.numpy()})
    return float(np.abs(got - expected).max())


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - start:.1f} s", flush=True)
    sys.exit(code)
