"""Time of a two-view SupCon stage-1 run (paper 002, Eq. 1) against a plain CE run at the same batch size.

    python bench/supcon_step.py [--model resnet18] [--size 32] [--batch 64] [--n 768] [--epochs 1]

Both sides are `kitlib.train.fit` on the same TorchImageSet from the same seed, no validation. SupCon draws two
augmented views of every image, passes both through the backbone in one batch of 2 x batch, projects them
(2-layer MLP) and computes Eq. 1 in float32; CE passes one view. Prints both rates and the supcon/CE time ratio
(about 2 is the cost of the second view alone). One run of each after a warm-up (use --rounds for a median).
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
    ap.add_argument("--tau", type=float, default=0.05)
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

    fns = {"ce": run("ce"), "supcon": run("supcon", temperature=a.tau)}

    fns["ce"]()  # warm-up (allocator, cudnn autotune, page cache)
    t = time_calls(fns, a.rounds, device)
    ce, sc = t["ce"], t["supcon"]
    imgs = a.epochs * len(ds)
    print(f"device={device} model={a.model} size={a.size} batch={a.batch} images/run={imgs} rounds={a.rounds}")
    print(f"ce     : {imgs / ce:9.1f} images/s  ({ce:.2f} s)")
    print(f"supcon : {imgs / sc:9.1f} images/s  ({sc:.2f} s, two views per image)")
    print(f"supcon/ce time ratio: {sc / ce:.3f}")


if __name__ == "__main__":
    main()
