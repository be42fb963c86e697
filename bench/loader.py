"""Loader images/s (decoded arrays -> augmented, normalised batches) against model training images/s.

    python bench/loader.py [--model resnet18] [--size 32] [--batch 64] [--workers 0]

The loader side iterates kitlib's training DataLoader (TorchImageSet + train transform + sampler) without a
model; the model side runs forward+backward+SGD steps on batches already in memory. Prints both rates and
loader/model (goal: at least 3, so the model never waits for data).
"""
import argparse
import time

import torch
import torch.nn.functional as F

from kitlib.data import TorchImageSet, build_transform, make_loader, make_synthetic
from kitlib.infer import resolve_device
from kitlib.samplers import build_sampler
from kitlib.train import ModelSpec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    arr = make_synthetic(n=a.n, size=a.size, seed=0)
    ds = TorchImageSet(arr, build_transform(train=True, size=a.size, rotation=10, color_jitter=0.1), with_masks=False)
    loader = make_loader(ds, a.batch, sampler=build_sampler("class", ds.labels, seed=0), num_workers=a.workers)

    batches = []
    t0 = time.perf_counter()
    for b in loader:
        x = b["image"].to(device, non_blocking=True)
        batches.append((x, b["label"].to(device)))
    if cuda:
        torch.cuda.synchronize()
    loader_rate = len(ds) / (time.perf_counter() - t0)

    model = ModelSpec(a.model, arr.num_classes, small_input=a.size <= 64).build().to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last) if cuda else x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for x, y in batches[:3]:
        step(x, y)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    seen = 0
    for x, y in batches[3:3 + a.steps]:
        step(x, y)
        seen += len(x)
    if cuda:
        torch.cuda.synchronize()
    model_rate = seen / (time.perf_counter() - t0)
    print(f"device={device} model={a.model} size={a.size} batch={a.batch} workers={a.workers}")
    print(f"loader: {loader_rate:9.1f} images/s (rotation, flip, colour jitter, normalise, class-balanced sampler)")
    print(f"model : {model_rate:9.1f} images/s (forward + backward + SGD step)")
    print(f"loader/model: {loader_rate / model_rate:.2f}  (goal >= 3)")


if __name__ == "__main__":
    main()
