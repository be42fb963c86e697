"""Paper 004 (Zeng et al., 2022): metric learning in the first of two stages. Tables and figures of notebook 05."""
from __future__ import annotations

from kitlib import metrics as M

PAPER = "metric_learning"
N_MINOR = {"skin7": 2}  # the paper's minority group: 3 least frequent classes, 2 on Skin7


def class_groups(dataset: str, train_counts, n_major: int = 3) -> dict[str, list[int]]:
    """Major / minor classes from training counts: the 3 most frequent; the 3 least frequent (2 on Skin7)."""
    n_minor = N_MINOR.get(dataset, 3)
    return M.class_groups_by_count(train_counts, n_major, min(n_minor, len(train_counts) - n_major))
