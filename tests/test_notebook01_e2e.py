"""End to end through the CLI on the synthetic set: `python -m kitlib reproduce perturbed_input --profile smoke`,
shrunk with -p so it runs in well under a minute, writes every table and figure of notebook 01."""
import json

import pandas as pd

from kitlib.cli import main

TABLES = ["table1", "eps_validation", "table2_ours_synthetic", "table2_paper_vs_ours_synthetic",
          "table2_effects_synthetic", "tau_validation", "ablation_measure", "inference_time", "claims"]
FIGURES = ["fig2_per_class_synthetic", "fig3_eps_tiny_cnn", "fig3_T"]


def test_reproduce_perturbed_input_smoke(tmp_path):
    rc = main(["reproduce", "perturbed_input", "--profile", "smoke", "--out", str(tmp_path), "--device", "cpu",
               "--no-progress",
               "-p", "dataset_options={synthetic: {n: 500, size: 16, seed: 1}}",
               "-p", "image_size={synthetic: 16}", "-p", "epochs=2", "-p", "methods=[ce, rs, ldam_drw]",
               "-p", "ablation_methods=[ce]", "-p", "T_grid=[1, 1000]", "-p", "eps_grid=[0, 0.01, 0.1]",
               "-p", "timing_images=32", "-p", f"run_root={tmp_path / 'runs'}"])
    out = tmp_path / "smoke" / "perturbed_input"
    assert rc == 0, (out / "run.json").read_text() if (out / "run.json").exists() else "no run.json"
    for t in TABLES:
        assert (out / f"{t}.csv").stat().st_size > 0 and (out / f"{t}.md").stat().st_size > 0, t
    for f in FIGURES:
        assert (out / f"{f}.png").stat().st_size > 1000 and (out / f"{f}.pdf").stat().st_size > 1000, f
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["parameters"]["epochs"] == 2
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["methods"] == ["ce", "rs", "ldam_drw"]
    t2 = pd.read_csv(out / "table2_ours_synthetic.csv")
    # 3 methods x (baseline, +ours, +LA, +tau-norm) x (MCR, SCR), one backbone
    assert len(t2) == 24 and set(t2["row"]) >= {"TinyCNN|CE", "TinyCNN|CE+ours", "TinyCNN|LDAM-DRW+ours"}
    assert t2["value"].between(0, 100).all()
    side = pd.read_csv(out / "table2_paper_vs_ours_synthetic.csv", keep_default_na=False)
    assert {"paper is", "paper", "ours is", "ours", "diff"} <= set(side.columns)
    assert (side["paper"] != "").all() and (side["diff"] == "").all()  # paper side filled, no diff off-protocol
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns[:11]) == ["paper", "claim_id", "claim", "contrast", "metric", "paper_effect",
                                         "our_effect", "ci_low", "ci_high", "n_units", "verdict"]
    assert {"mcr_up[synthetic]", "beats_logit_adj[synthetic]", "cost"} <= set(claims["claim_id"])
    t1 = pd.read_csv(out / "table1.csv")
    skin7 = t1[(t1["row"] == "Skin7") & (t1["column"] == "imbalance")]
    assert float(skin7["paper"].iloc[0]) == 58.3  # the paper's numbers are shown beside ours
