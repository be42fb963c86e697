"""Stage-2 cost of paper 004's two-stage training: 10 head epochs on cached features vs one stage-1 epoch.

    PYTHONPATH=. python bench/two_stage.py [--model resnet18] [--size 32] [--batch 32] [--n 768] [--head-epochs 10]

One run each, same ModelSpec, data and batch size: the stage-1 side is one epoch of `kitlib.train.fit` with CE
(augmented training transform, no validation); the stage-2 side is `kitlib.train.retrain_head_features` with
cRW for --head-epochs epochs (one forward pass of the frozen backbone, then the linear head on the cached
(N, D) features; test-time transform, no validation). Prints both times and the stage-2 / stage-1 ratio
(goal: at most 0.5). No cache is reused: each side runs in a fresh temporary run folder.
"""
import argparse
import tempfile
import time

import torch

from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.infer import resolve_device
from kitlib.train import ModelSpec, TrainConfig, fit, retrain_head_features


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--head-epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=None, help="tiny_cnn width (only with --model tiny_cnn)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    arr = make_synthetic(n=a.n, size=a.size, seed=0)
    train = TorchImageSet(arr, build_transform(train=True, size=a.size), with_masks=False)
    plain = TorchImageSet(arr, build_transform(train=False, size=a.size), with_masks=False)
    extra = {"width": a.width} if a.width else {}
    spec = ModelSpec(a.model, arr.num_classes, small_input=a.size <= 64, **extra)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        cfg1 = TrainConfig(epochs=1, batch_size=a.batch, lr=0.01, schedule="constant", select_metric=None,
                           device=str(device))
        sync()
        t0 = time.perf_counter()
        stage1 = fit(spec, "ce", train, None, cfg1, run_root=tmp, cache=False, progress=False)
        sync()
        t1 = time.perf_counter() - t0
        cfg2 = TrainConfig(epochs=a.head_epochs, batch_size=a.batch, lr=0.1, schedule="cosine", min_lr=1e-6,
                           select_metric=None, device=str(device))
        t0 = time.perf_counter()
        retrain_head_features(stage1, plain, None, kind="crw", cfg=cfg2, run_root=tmp, cache=False, progress=False)
        sync()
        t2 = time.perf_counter() - t0
    print(f"{a.model} {a.size}px n={a.n} batch={a.batch} on {device}")
    print(f"stage 1, one epoch:               {t1:.3f} s")
    print(f"stage 2, {a.head_epochs} head epochs (cached): {t2:.3f} s")
    print(f"ratio stage2 / stage1-epoch: {t2 / t1:.3f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
