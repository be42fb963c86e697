"""Time per image: plain vs perturbed-input inference (paper 000), same model, same data, one run.

    python bench/perturb.py                       # resnet18 (small-input stem), 32 px, batch 64, 256 images
    python bench/perturb.py --model resnet50 --size 224 --batch 32 --n 128

Plain inference is one forward pass under no_grad. Perturbed inference (kitlib.perturb.predict_perturbed)
is one forward with a graph, one backward to the input and one more forward, so its cost should be at
most ~3x the plain one. The paper reports 0.283 s vs 0.107 s per image (2.6x) on a 2080Ti. Both paths
batch the same random normalised images, move them to the device and bring the probabilities back to
the CPU; each is warmed up first and timed in `--repeats` alternating rounds (the median is reported).
The gradient step alone is timed too, so the ratio splits into 1 (the final forward) + gradient / plain.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import json

from kitlib.infer import autocast, time_calls
from kitlib.models import create_model
from kitlib.perturb import predict_perturbed, signed_gradient, target_distribution


def plain_predict(model, x: torch.Tensor, batch: int, device: torch.device, amp: bool = False) -> np.ndarray:
    """Softmax probabilities (N, C): one forward per batch under no_grad (bf16 autocast on CUDA when amp)."""
    model.eval()
    out = []
    with torch.no_grad(), autocast(device, amp):
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(device, non_blocking=True)
            out.append(F.softmax(model(xb).float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def perturbed_predict(model, x, batch, device, counts, eps, amp=False):
    return predict_perturbed(model, x, counts, eps=eps, batch_size=batch, progress=False, amp=amp)


def gradient_only(model, x, batch, device, counts, amp=False):
    """The extra work of the method alone: forward with a graph + backward to the input, per batch."""
    target = target_distribution(counts)
    for i in range(0, len(x), batch):
        signed_gradient(model, x[i:i + batch].to(device, non_blocking=True), target, amp=amp)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", help="kitlib.models backbone name (default resnet18)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--n", type=int, default=256, help="number of images (default 256)")
    ap.add_argument("--classes", type=int, default=7, help="number of classes (default 7)")
    ap.add_argument("--eps", type=float, default=1e-3, help="perturbation size (default 1e-3, the paper's)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds; the median per path is kept (default 5)")
    ap.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA for both paths (default fp32 for both)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also append the result as one JSON line to PATH")
    args = ap.parse_args(argv)
    for name in ("size", "batch", "n", "classes", "repeats"):
        if getattr(args, name) < 1 or (name == "classes" and args.classes < 2):
            ap.error(f"--{name} must be a positive integer (>= 2 for --classes), got {getattr(args, name)}")

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(args.seed)
    small = args.size <= 64
    model = create_model(args.model, args.classes, small_input=small).to(device).eval()
    x = torch.randn(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed))
    if device.type == "cuda":
        x = x.pin_memory()
    counts = [int(1000 / (i + 1) ** 1.5) for i in range(args.classes)]  # a long-tailed training set

    amp = args.amp
    plain = lambda: plain_predict(model, x, args.batch, device, amp)  # noqa: E731
    pert = lambda: perturbed_predict(model, x, args.batch, device, counts, args.eps, amp)  # noqa: E731
    warm_x = x[: args.batch]
    plain_predict(model, warm_x, args.batch, device, amp)  # warm-up (allocator, cuDNN autotune, oneDNN kernels)
    perturbed_predict(model, warm_x, args.batch, device, counts, args.eps, amp)
    grad = lambda: gradient_only(model, x, args.batch, device, counts, amp)  # noqa: E731
    t = time_calls({"plain": plain, "perturbed": pert, "gradient": grad}, args.repeats, device)
    t_plain, t_pert, t_grad = t["plain"], t["perturbed"], t["gradient"]

    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"cpu ({torch.get_num_threads()} threads)"
    print(f"model={args.model} size={args.size} small_input={small} batch={args.batch} n={args.n} "
          f"classes={args.classes} eps={args.eps:g} device={dev_name} "
          f"precision={'bf16 autocast' if amp and device.type == 'cuda' else 'fp32'} (both paths)")
    print(f"plain:     {args.n / t_plain:9.1f} images/s   {1e3 * t_plain / args.n:8.3f} ms/image")
    print(f"perturbed: {args.n / t_pert:9.1f} images/s   {1e3 * t_pert / args.n:8.3f} ms/image")
    print(f"  of which forward-with-graph + backward-to-input: {1e3 * t_grad / args.n:8.3f} ms/image "
          f"({t_grad / t_plain:.2f}x a plain forward)")
    ratio = t_pert / t_plain
    print(f"perturbed/plain time ratio: {ratio:.2f}x  (paper: 0.283 s / 0.107 s = 2.64x; goal <= 3x)")
    result = {"model": args.model, "size": args.size, "batch": args.batch, "n": args.n, "device": dev_name,
              "precision": "bf16" if amp and device.type == "cuda" else "fp32",
              "plain_s_per_image": t_plain / args.n, "perturbed_s_per_image": t_pert / args.n,
              "gradient_s_per_image": t_grad / args.n, "ratio": ratio}
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
