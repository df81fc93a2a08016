"""Training batches: one source's (:class:`BatchStream`) or several sources' interleaved (:class:`MixedBatchStream`).

A source's batches are a seeded permutation of its training rows, normalised on the fly; several
sources' batches are shuffled together, so sources are sampled in proportion to their training
size and every training row is seen once per epoch. Everything depends only on ``(seed, epoch)``,
so a resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from vlarisk.dataset import RiskDataset
from vlarisk.inference import gather_rows


class BatchStream:
    """Training batches drawn from a seeded permutation of the training rows.

    On a GPU with room for it, the normalised training rows are copied to the device once and each
    batch is an index into them (the epoch's whole index is uploaded once, so a step costs no host
    work). Otherwise each batch is gathered from the (memory-mapped) dataset straight into a reused
    buffer and normalised there in place, so no normalised copy of the data, and no per-batch
    allocation, is ever made in host memory.

    The batch tensors of the host path are reused: a yielded ``hidden`` is valid until the next
    batch is drawn from the same stream (the training loop finishes its step before that). Within
    a batch the rows are in ascending order (sequential reads); the batches of an epoch and their
    content depend only on ``(seed, epoch)``.
    """

    def __init__(
        self, dataset: RiskDataset, rows: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device, batch_size: int
    ):
        self.dataset, self.rows, self.device, self.batch_size = dataset, np.asarray(rows), device, batch_size
        if len(self.rows) and (int(self.rows.min()) < 0 or int(self.rows.max()) >= len(dataset)):
            raise IndexError(f"training rows out of range for a dataset of {len(dataset)} steps")
        self.mean, self.std = mean.to(device), std.to(device)
        self.labels = torch.from_numpy(np.asarray(dataset.labels[self.rows], dtype=np.float32)).to(device)
        self.resident = self._copy_to_device() if device.type == "cuda" else None
        self._host_buffers: list[np.ndarray] = []
        self._copied: list = []  # CUDA events: when each pinned buffer's upload finished

    def _copy_to_device(self) -> torch.Tensor | None:
        needed = len(self.rows) * self.dataset.hidden_dim * 4
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed > 0.6 * free:
            return None
        resident = torch.empty((len(self.rows), self.dataset.hidden_dim), dtype=torch.float32, device=self.device)
        staging = np.empty((min(8192, len(self.rows)), self.dataset.hidden_dim), dtype=np.float32)
        for start in range(0, len(self.rows), len(staging)):
            block = gather_rows(self.dataset.hidden, self.rows[start : start + len(staging)], staging)
            part = resident[start : start + len(block)]
            part.copy_(torch.from_numpy(block))
            part.sub_(self.mean).div_(self.std)
        return resident

    def __len__(self) -> int:
        return len(self.rows)

    def positions(self, seed: int, epoch: int) -> np.ndarray:
        """Positions (into ``rows``) of the epoch's batches, concatenated; each batch sorted."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        full = len(order) - len(order) % self.batch_size
        head = np.sort(order[:full].reshape(-1, self.batch_size), axis=1).reshape(-1)
        return np.concatenate([head, np.sort(order[full:])])

    def epoch(self, seed: int, epoch: int):
        """Yield ``(hidden, target)`` batches in the order fixed by ``(seed, epoch)``."""
        positions = self.positions(seed, epoch)
        if self.resident is not None:
            index = torch.from_numpy(positions).to(self.device)
            for start in range(0, len(positions), self.batch_size):
                batch = index[start : start + self.batch_size]
                yield self.resident.index_select(0, batch), self.labels.index_select(0, batch)
            return
        host_index = torch.from_numpy(positions)
        device_index = host_index.to(self.device) if self.device.type != "cpu" else host_index
        cuda = self.device.type == "cuda"
        for number, start in enumerate(range(0, len(positions), self.batch_size)):
            batch = positions[start : start + self.batch_size]
            slot = number % 2 if cuda else 0  # two pinned buffers: gather one while the other uploads
            if cuda and self._copied[slot] is not None:
                self._copied[slot].synchronize()  # the last upload from this buffer has finished
            hidden = torch.from_numpy(gather_rows(self.dataset.hidden, self.rows[batch], self._host_buffer(slot)))
            if self.device.type != "cpu":
                hidden = hidden.to(self.device, non_blocking=cuda)
                if cuda:
                    self._copied[slot] = torch.cuda.Event()
                    self._copied[slot].record()
            hidden.sub_(self.mean).div_(self.std)
            yield hidden, self.labels.index_select(0, device_index[start : start + len(batch)])

    def _host_buffer(self, slot: int) -> np.ndarray:
        """The reused gather buffer ``slot`` (in pinned memory for CUDA), made on first use."""
        while len(self._host_buffers) <= slot:
            buffer = torch.empty((min(self.batch_size, max(len(self.rows), 1)), self.dataset.hidden_dim), dtype=torch.float32)
            self._host_buffers.append((buffer.pin_memory() if self.device.type == "cuda" else buffer).numpy())
            self._copied.append(None)
        return self._host_buffers[slot]


class MixedBatchStream:
    """Every source's batches of an epoch, interleaved in a seeded random order."""

    def __init__(self, streams: list[BatchStream]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return sum(len(stream) for stream in self.streams)

    def epoch(self, seed: int, epoch: int):
        """Yield ``(source_index, hidden, target)`` in the order fixed by ``(seed, epoch)``."""
        counts = [-(-len(stream) // stream.batch_size) for stream in self.streams]
        schedule = np.random.default_rng([seed, epoch]).permutation(np.repeat(np.arange(len(counts)), counts))
        batches = [stream.epoch(seed, epoch) for stream in self.streams]
        for index in schedule:
            hidden, target = next(batches[index])
            yield int(index), hidden, target
