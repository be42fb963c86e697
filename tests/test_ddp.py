"""DistributedDataParallel on CPU: two gloo processes train one model and stay in sync."""
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_torchrun_two_processes(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(worker), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["epochs"] == 2
    for part in ("state", "supcon", "projection"):
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), f"ranks disagree on {part} {k}"
    assert len(list((tmp_path / "runs").glob("*/final.pt"))) == 1
