"""Notebook 04 (CARE) end to end at the smoke profile through the CLI: every table, figure and claims.csv."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_notebook04_smoke_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    r = subprocess.run([sys.executable, "-m", "kitlib", "reproduce", "care", "--out", str(tmp_path / "res"),
                        "-p", f"run_root={tmp_path / 'runs'}"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "res" / "smoke" / "care"
    for stem in ("dataset_statistics", "table2_ours", "table2_effects", "table2_paper_vs_ours", "table3_ours",
                 "table4_ours", "table5_alpha", "table6_tau", "table7_lam", "fig11_box_scale", "table8_box_iou",
                 "table8_9_ours", "table10_ours", "attention_inside_box", "overlay_energy", "claims"):
        assert (out / f"{stem}.csv").is_file(), stem
    for fig in ("fig1_histogram", "fig8_per_class_recall", "fig9_training_curves", "fig10_overlays",
                "fig11_box_scale", "fig12_overlays_tau", "fig14_overlays_boxes"):
        assert (out / f"{fig}.png").is_file() and (out / f"{fig}.pdf").is_file(), fig
    iou = pd.read_csv(out / "table8_box_iou.csv").set_index("boxes")
    assert list(iou.index) == ["saliency", "DeepLabV3", "centred 60 % box (reference)"]
    assert (iou["found"] > 0).all() and iou["IoU mean"].between(0, 1).all()
    claims = pd.read_csv(out / "claims.csv")
    assert {"minority_recall", "mca", "attention", "robust_tau", "rsna_pneumonia"} <= set(claims["claim_id"])
    assert claims.loc[claims["claim_id"] == "rsna_pneumonia", "verdict"].item() == "not run"
