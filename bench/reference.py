"""The baseline trainlab is measured against: the PyTorch MNIST example, in a plain loop.

The network, optimizer and schedule of pytorch/examples `mnist/main.py`
(conv32 3x3 - conv64 3x3 - maxpool - dropout 0.25 - fc128 - dropout 0.5 - fc10;
Adadelta lr 1.0, StepLR gamma 0.7 per epoch, batch 64, normalised with the
example's (0.1307, 0.3081)), trained on data already in memory as normalised
float tensors, so the reference pays no input-pipeline cost at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py `Net`, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def to_input(x_uint8: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(x_uint8).float() / 255.0 - 0.1307) / 0.3081


def train_reference(train_x: np.ndarray, train_y: np.ndarray, epochs: int, seed: int,
                    on_epoch_end: Callable[[int, nn.Module, float], bool]) -> None:
    """Train; ``on_epoch_end(epoch, model, train_seconds)`` returns False to stop."""
    torch.manual_seed(seed)
    x, y = to_input(train_x), torch.from_numpy(train_y)
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    import time

    for epoch in range(1, epochs + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
        if not on_epoch_end(epoch, model, time.perf_counter() - started):
            return


@torch.inference_mode()
def reference_accuracy(model: nn.Module, test_x: np.ndarray, test_y: np.ndarray) -> float:
    model.eval()
    x = to_input(test_x)
    pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred.numpy() == test_y).mean())
