"""Time of a Balanced-MixUp training run against a plain CE run: same model, batch, data and engine.

    python bench/mixup_step.py [--model resnet18] [--size 32] [--batch 64] [--n 768] [--epochs 1]

Both sides are `kitlib.train.fit` on the same TorchImageSet from the same seed, no validation; Balanced-MixUp
draws a second, class-balanced batch per step from the engine's `extra_sampler` and mixes the two. Prints both
rates and the mixup/CE time ratio (goal: at most 1.3, i.e. the second loader costs less than 30 %). One run of each
after a warm-up, as the issue asks (use --rounds for a median of several).
"""
import argparse
import tempfile

from kitlib.data import TorchImageSet, build_transform, make_synthetic
from kitlib.infer import resolve_device, time_calls
from kitlib.methods import build_method
from kitlib.train import ModelSpec, TrainConfig, fit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    arr = make_synthetic(n=a.n, size=a.size, seed=0)
    ds = TorchImageSet(arr, build_transform(train=True, size=a.size), with_masks=False)
    spec = ModelSpec(a.model, arr.num_classes, small_input=a.size <= 64)
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch, lr=0.01, schedule="constant", select_metric=None,
                      device=str(device), num_workers=a.workers)

    def run(name, **params):
        def go():
            with tempfile.TemporaryDirectory() as tmp:
                fit(spec, build_method(name, **params), ds, None, cfg, run_root=tmp, progress=False)
        return go

    fns = {"ce": run("ce"), "balanced_mixup": run("balanced_mixup", alpha=a.alpha)}

    fns["ce"]()  # warm-up (allocator, cudnn autotune, page cache)
    t = time_calls(fns, a.rounds, device)
    ce, bm = t["ce"], t["balanced_mixup"]
    imgs = a.epochs * len(ds)
    print(f"device={device} model={a.model} size={a.size} batch={a.batch} images/run={imgs} rounds={a.rounds}")
    print(f"ce             : {imgs / ce:9.1f} images/s  ({ce:.2f} s)")
    print(f"balanced_mixup : {imgs / bm:9.1f} images/s  ({bm:.2f} s)")
    print(f"balanced_mixup/ce time ratio: {bm / ce:.3f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
