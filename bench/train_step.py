"""Images/s of kitlib's training engine against a bare hand-written PyTorch loop, same model, batch and data.

    python bench/train_step.py [--model resnet18] [--size 32] [--batch 64] [--n 768] [--epochs 1]

Both sides train the same ModelSpec from the same seed on the same TorchImageSet with the same SGD settings;
the kit side is `kitlib.train.fit` (sampler, schedule, AMP on CUDA, per-epoch checkpoint, no validation).
Prints both rates and the kit/bare time ratio (goal: at most 1.05). Rounds alternate; the median is reported.
"""
import argparse
import tempfile

import torch
import torch.nn.functional as F

from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.infer import resolve_device, time_calls
from kitlib.train import ModelSpec, TrainConfig, fit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    arr = make_synthetic(n=a.n, size=a.size, seed=0)
    ds = TorchImageSet(arr, build_transform(train=True, size=a.size), with_masks=False)
    spec = ModelSpec(a.model, arr.num_classes, small_input=a.size <= 64)
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch, lr=0.01, schedule="constant", select_metric=None,
                      device=str(device), num_workers=a.workers)
    cuda = device.type == "cuda"

    def kit():
        with tempfile.TemporaryDirectory() as tmp:
            fit(spec, "ce", ds, None, cfg, run_root=tmp, progress=False)

    def bare():
        torch.manual_seed(0)
        model = spec.build().to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        g = torch.Generator().manual_seed(0)
        loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, generator=g, num_workers=a.workers,
                                             pin_memory=cuda, persistent_workers=a.workers > 0)
        model.train()
        for _ in range(a.epochs):
            for b in loader:
                x, y = b["image"].to(device, non_blocking=True), b["label"].to(device, non_blocking=True)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    bare()  # warm-up (allocator, cudnn autotune, page cache)
    t = time_calls({"kit": kit, "bare": bare}, a.rounds, device)
    k, b = t["kit"], t["bare"]
    imgs = a.epochs * len(ds)
    print(f"device={device} model={a.model} size={a.size} batch={a.batch} images/run={imgs} rounds={a.rounds}")
    print(f"kit  : {imgs / k:9.1f} images/s  ({k:.2f} s)")
    print(f"bare : {imgs / b:9.1f} images/s  ({b:.2f} s)")
    print(f"kit/bare time ratio: {k / b:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
