"""Weighted k-nearest-neighbour classification of features: InsDis's protocol.

Features are L2-normalised and compared by cosine similarity s. Each query's k most
similar memory items (the train split) vote for their class with weight exp(s / tau);
the classes are ranked by their summed votes, ties by class id (lower first), and top-1 /
top-5 accuracy count the queries whose true class is ranked first / among the first five.

Memory-bounded: ``RunningTopK`` keeps only the k best (similarity, label) pairs per query
and takes the memory chunk by chunk, so a gallery of any size (ImageNet's 1.28 million
images) can stream through it; queries are processed in chunks too. Nothing here touches a
random number generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nacvae.checks import check_int, check_real
from nacvae.errors import DataError

__all__ = ["DEFAULT_K", "DEFAULT_TEMPERATURE", "RunningTopK", "check_knn_options", "knn_accuracy", "knn_votes",
           "ranked_classes", "topk_accuracies"]

DEFAULT_K = 200
DEFAULT_TEMPERATURE = 0.07
# Similarity entries of one (query chunk x memory chunk) block: 64 MiB of float32.
BLOCK_ENTRIES = 1 << 24


def check_knn_options(k, temperature) -> None:
    check_int("k", k)
    check_real("temperature", temperature, 0.0, low_open=True)


class RunningTopK:
    """The k most similar memory items seen so far for each query: (similarity, label).

    ``queries`` [Nq, F] are normalised once; ``add`` takes a memory chunk [M, F] with its
    labels [M] and merges it into each query's running top k. Work happens on the queries'
    device; a memory chunk is moved there.
    """

    def __init__(self, queries: torch.Tensor, k: int = DEFAULT_K, query_chunk: int | None = None) -> None:
        if queries.dim() != 2 or len(queries) == 0:
            raise DataError(f"k-NN needs query features [N, F] with N > 0, got shape {tuple(queries.shape)}.")
        self.queries = F.normalize(queries.float(), dim=1)
        self.k = k
        self.query_chunk = query_chunk
        n, device = len(queries), queries.device
        self.sims = torch.full((n, 0), float("-inf"), device=device)
        self.labels = torch.zeros((n, 0), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, memory: torch.Tensor, labels: torch.Tensor) -> None:
        if memory.dim() != 2 or memory.shape[1] != self.queries.shape[1] or len(labels) != len(memory):
            raise DataError(f"Memory features {tuple(memory.shape)} with {len(labels)} labels do not match "
                            f"query features of dimension {self.queries.shape[1]}.")
        if len(memory) == 0:
            return
        device = self.queries.device
        memory = F.normalize(memory.to(device).float(), dim=1)
        labels = labels.to(device=device, dtype=torch.long)
        chunk = self.query_chunk or max(1, BLOCK_ENTRIES // (len(memory) + self.k))
        keep = min(self.k, self.sims.shape[1] + len(memory))
        sims = torch.empty((len(self.queries), keep), device=device)
        best = torch.empty((len(self.queries), keep), dtype=torch.long, device=device)
        for s in range(0, len(self.queries), chunk):
            block = torch.cat([self.sims[s:s + chunk], self.queries[s:s + chunk] @ memory.T], dim=1)
            block_labels = torch.cat([self.labels[s:s + chunk], labels.expand(len(block), -1)], dim=1)
            # sorted=True: equal similarities keep the order topk gives; the votes do not depend on it.
            values, where = torch.topk(block, keep, dim=1)
            sims[s:s + chunk], best[s:s + chunk] = values, torch.gather(block_labels, 1, where)
        self.sims, self.labels = sims, best
        self.seen += len(memory)

    def votes(self, num_classes: int, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """[Nq, num_classes] summed weights exp(s / tau) of each query's neighbours, scaled per
        query by exp(-s_max / tau) (which keeps them finite at any tau and changes no ranking)."""
        if self.seen == 0:
            raise DataError("k-NN needs at least one memory item.")
        if int(self.labels.max()) >= num_classes or int(self.labels.min()) < 0:
            raise DataError(f"Memory labels must be class ids in [0, {num_classes}).")
        weights = torch.exp((self.sims.double() - self.sims[:, :1].double()) / temperature)
        out = torch.zeros((len(self.sims), num_classes), dtype=torch.float64, device=self.sims.device)
        return out.scatter_add_(1, self.labels, weights)


def knn_votes(queries: torch.Tensor, memory: torch.Tensor, memory_labels: torch.Tensor, num_classes: int,
              k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE, memory_chunk: int | None = None,
              query_chunk: int | None = None) -> torch.Tensor:
    """Class votes [Nq, C] of each query's k nearest memory items (see ``RunningTopK.votes``)."""
    check_knn_options(k, temperature)
    top = RunningTopK(queries, k, query_chunk)
    step = memory_chunk or max(1, len(memory))
    for s in range(0, len(memory), step):
        top.add(memory[s:s + step], memory_labels[s:s + step])
    return top.votes(num_classes, temperature)


def ranked_classes(votes: torch.Tensor) -> torch.Tensor:
    """Classes [Nq, C] by votes, most first; equal votes by class id, lower first."""
    return torch.sort(votes, dim=1, descending=True, stable=True).indices


def topk_accuracies(votes: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """{k: fraction of queries whose class is among their k best-voted}; k is capped at the classes."""
    if len(labels) != len(votes):
        raise DataError(f"{len(votes)} queries but {len(labels)} query labels.")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= votes.shape[1]):
        raise DataError(f"Query labels must be class ids in [0, {votes.shape[1]}).")
    hit_rank = (ranked_classes(votes) == labels.to(votes.device).view(-1, 1)).float().argmax(dim=1)
    return {k: float((hit_rank < k).double().mean()) for k in ks}


def knn_accuracy(queries: torch.Tensor, query_labels: torch.Tensor, memory: torch.Tensor,
                 memory_labels: torch.Tensor, num_classes: int, k: int = DEFAULT_K,
                 temperature: float = DEFAULT_TEMPERATURE, memory_chunk: int | None = None) -> dict[str, float]:
    """{"top1", "top5"} of the weighted k-NN classifier of ``queries`` against ``memory``."""
    acc = topk_accuracies(knn_votes(queries, memory, memory_labels, num_classes, k, temperature, memory_chunk),
                          query_labels)
    return {"top1": acc[1], "top5": acc[5]}
