"""The tensors of one federation: each client's training and attack/test set, the server set, the global test set."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..data.types import DataReport, ImageTable

__all__ = ["Split", "FederatedData", "to_tensor", "build_federated_data"]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """The same split with its tensors on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        return Split(x=self.x.to(device), y=self.y.to(device), ids=self.ids)

    @classmethod
    def of(cls, table: ImageTable, index: np.ndarray) -> Split:
        sub = table.subset(index)
        return cls(x=to_tensor(sub.images), y=torch.from_numpy(sub.labels.astype(np.int64)), ids=sub.ids)


@dataclass(frozen=True)
class FederatedData:
    task: str
    class_names: tuple[str, ...]
    synthetic: bool
    client_train: tuple[Split, ...]
    client_test: tuple[Split, ...]
    server: Split
    global_test: Split
    report: DataReport

    @property
    def num_clients(self) -> int:
        return len(self.client_train)

    @property
    def device(self) -> torch.device:
        return self.global_test.x.device

    def to(self, device: torch.device | str) -> FederatedData:
        """The federation with every tensor on ``device``, moved once (the data sets here fit any GPU)."""
        if torch.device(device) == self.device:
            return self
        return replace(self, client_train=tuple(s.to(device) for s in self.client_train),
                       client_test=tuple(s.to(device) for s in self.client_test), server=self.server.to(device),
                       global_test=self.global_test.to(device))

    @property
    def in_channels(self) -> int:
        return int(self.global_test.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.global_test.x.shape[-1])

    def split_ids(self) -> dict[str, object]:
        return {
            "global_test": list(self.global_test.ids),
            "server": list(self.server.ids),
            "client_test": [list(s.ids) for s in self.client_test],
            "client_train": [list(s.ids) for s in self.client_train],
        }


def build_federated_data(table: ImageTable, report: DataReport, splits: object) -> FederatedData:
    """Tensors for every set of ``splits`` (a :class:`fedsafe.data.splits.Splits`)."""
    splits.check_disjoint()  # type: ignore[attr-defined]
    report.splits = splits.to_report(table.labels, table.class_names)  # type: ignore[attr-defined]
    report.notes.extend(n for n in splits.notes if n not in report.notes)  # type: ignore[attr-defined]
    return FederatedData(
        task=table.name, class_names=table.class_names, synthetic=report.synthetic,
        client_train=tuple(Split.of(table, i) for i in splits.client_train),  # type: ignore[attr-defined]
        client_test=tuple(Split.of(table, i) for i in splits.client_test),  # type: ignore[attr-defined]
        server=Split.of(table, splits.server),  # type: ignore[attr-defined]
        global_test=Split.of(table, splits.global_test),  # type: ignore[attr-defined]
        report=report,
    )
