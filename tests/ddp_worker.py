"""Launched by tests/test_ddp.py as `torchrun --nproc_per_node 2 tests/ddp_worker.py OUT` (gloo on CPU)."""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.train import ModelSpec, TrainConfig, fit

out = Path(sys.argv[1])
arr = make_synthetic(n=160, num_classes=3, ratio=4, size=16, seed=0)
idx = np.random.default_rng(0).permutation(len(arr))
train = TorchImageSet(arr, build_transform(train=True, size=16), indices=idx[:120])
val = TorchImageSet(arr, build_transform(train=False, size=16), indices=idx[120:])
run = fit(ModelSpec("tiny_cnn", 3, width=8), "ce", train, val,
          TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="constant"), run_root=out / "runs", progress=False)
# contrastive stage 1: the classifier head gets no gradient (find_unused_parameters), class-aware batches
from kitlib.methods import build_method  # noqa: E402

sup = fit(ModelSpec("tiny_cnn", 3, width=8), build_method("supcon", temperature=0.1, sampler="class_aware"), train,
          val, TrainConfig(epochs=1, batch_size=16, lr=0.05, schedule="constant", select="last"),
          run_root=out / "runs_supcon", progress=False)
rank = dist.get_rank()
torch.save({"state": run.model.state_dict(), "world": dist.get_world_size(), "epochs": len(run.history),
            "supcon": sup.model.state_dict(), "projection": sup.extras[0].state_dict()}, out / f"rank{rank}.pt")
dist.destroy_process_group()
