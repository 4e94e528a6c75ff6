"""A torch twin's size as Keras counts it, so both frameworks' cards and reports compare like with like."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """What Keras's ``count_params`` counts for the same twin: parameters and batch norm's running statistics."""
    statistics = sum(
        module.running_mean.numel() + module.running_var.numel()
        for module in model.modules()
        if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None
    )
    return sum(p.numel() for p in model.parameters()) + statistics
