"""Time of CARE fine-tuning (paper 003, Eqs. 4-7) against plain CE training, same model, data and batch size.

    python bench/care_step.py [--model resnet18] [--size 64] [--batch 32] [--n 640] [--epochs 1] [--boxed all]

Both sides are `kitlib.train.fit` on the same TorchImageSet with lesion masks (the synthetic set draws one per
image), from the same seed, no validation. CARE adds to the CE forward/backward the differentiable Grad-CAM of
the true class (for a global-pooling + linear head the channel weights are w_c / Z: no second backward), the box
masks of the batch and Eqs. 5-7. --boxed all puts a box on every class (the most work per step); --boxed minor
boxes only the smallest class (the paper's default). Prints both rates and the care/CE time ratio (goal <= 1.3).
One run of each after a warm-up (use --rounds for a median).
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
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=640)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--boxed", choices=["all", "minor"], default="all")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    arr = make_synthetic(n=a.n, size=a.size, seed=0, num_classes=5, ratio=10)
    ds = TorchImageSet(arr, build_transform(train=True, size=a.size), with_masks=True)
    spec = ModelSpec(a.model, arr.num_classes, small_input=a.size <= 64)
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch, lr=1e-4, optimizer="adamw", schedule="constant",
                      select_metric=None, device=str(device), num_workers=a.workers)
    boxed = list(range(arr.num_classes)) if a.boxed == "all" else None

    def run(name, **params):
        def go():
            with tempfile.TemporaryDirectory() as tmp:
                fit(spec, build_method(name, **params), ds, None, cfg, run_root=tmp, progress=False)
        return go

    fns = {"ce": run("ce"), "care": run("care", base="ce", box_classes=boxed)}

    fns["ce"]()  # warm-up (allocator, cudnn autotune, page cache)
    t = time_calls(fns, a.rounds, device)
    ce, care = t["ce"], t["care"]
    imgs = a.epochs * len(ds)
    print(f"device={device} model={a.model} size={a.size} batch={a.batch} images/run={imgs} boxed={a.boxed} "
          f"rounds={a.rounds}")
    print(f"ce   : {imgs / ce:9.1f} images/s  ({ce:.2f} s)")
    print(f"care : {imgs / care:9.1f} images/s  ({care:.2f} s, Grad-CAM shortcut + Eqs. 5-7)")
    print(f"care/ce time ratio: {care / ce:.3f}")


if __name__ == "__main__":
    main()
