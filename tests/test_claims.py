"""kitlib.claims: paired effects, the one verdict rule, claims.csv and the claims page / CLI."""
import json

import numpy as np
import pandas as pd
import pytest

from kitlib import claims as C
from kitlib.cli import main
from kitlib.reproduce import file_checksums

UP = C.Claim("up", "X raises MCR", "X - CE", "MCR (pp)", paper_effect=2.0)


def test_paired_effect_pairs_on_common_units_by_hand():
    e = C.paired_effect({0: 0.5, 1: 0.7, 2: 0.9}, {1: 0.6, 2: 0.6, 3: 0.1})  # units 1, 2 in common
    assert e.diffs == pytest.approx((0.1, 0.3))
    assert e.mean == pytest.approx(0.2) and e.std == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert (e.ci_low, e.ci_high) == pytest.approx((0.1, 0.3))  # 2 units: the interval spans them
    with pytest.raises(ValueError, match="none in common"):
        C.paired_effect({0: 1.0}, {1: 1.0})


@pytest.mark.parametrize("diffs, want", [((1, 2, 3), "supported"), ((-1, -2, -3), "not supported"),
                                         ((-1, 2, 1), "inconclusive"), ((5,), "inconclusive")])
def test_verdict_greater(diffs, want):
    assert C.verdict(UP, C.Effect.from_diffs(diffs)) == want


def test_verdict_less_within_and_not_run():
    down = C.Claim("d", "falls", "a - b", "m", test="less")
    assert C.verdict(down, C.Effect.from_diffs([-1, -2])) == "supported"
    eq = C.Claim("eq", "equal", "a - b", "m", test="within", bound=(-1, 1))
    assert C.verdict(eq, C.Effect.from_diffs([0.2, -0.3, 0.1])) == "supported"
    assert C.verdict(eq, C.Effect.from_diffs([3, 4])) == "not supported"
    assert C.verdict(eq, C.Effect.from_diffs([0, 3])) == "inconclusive"
    assert C.verdict(UP, None) == "not run"
    with pytest.raises(ValueError, match="'eq'.*bound=\\(lo, hi\\)"):
        C.Claim("eq", "x", "a", "m", test="within", bound=1.0)


def test_judge_rows_not_run_needs_reason_and_at_chance_is_inconclusive():
    row = C.judge("p", UP, C.Effect.from_diffs([1, 2, 3]), at_chance=True)
    assert row["verdict"] == "inconclusive" and "at chance" in row["note"]
    with pytest.raises(ValueError, match="say why"):
        C.judge("p", UP, None)
    row = C.judge("p", UP, None, note="X-ray6 not present: see kitlib/data/manifests/xray6.yaml")
    assert row["verdict"] == "not run" and row["n_units"] == 0 and "X-ray6" in row["note"]
    assert list(row) == list(C.COLUMNS)


def test_judge_every_needs_every_member():
    good, flat = C.Effect.from_diffs([1, 2]), C.Effect.from_diffs([-1, 1])
    assert C.judge_every("p", UP, {"ce": good, "rs": good})["verdict"] == "supported"
    row = C.judge_every("p", UP, {"ce": good, "rs": flat, "rw": None})
    assert row["verdict"] == "inconclusive" and "weakest: rs" in row["contrast"] and "not run: rw" in row["note"]
    assert C.judge_every("p", UP, {"ce": good, "rs": C.Effect.from_diffs([-2, -1])})["verdict"] == "not supported"
    # a one-unit member has no interval: the row shows the member whose interval decides, not the lone value
    bad = C.Effect.from_diffs([-19.0, -7.0])
    row = C.judge_every("p", UP, {"one": C.Effect.from_diffs([-3.0]), "da": bad, "ce": good})
    assert row["verdict"] == "not supported" and "weakest: da" in row["contrast"]
    assert row["our_effect"] == pytest.approx(-13.0) and row["ci_high"] < 0


def test_effect_table_from_long_scores():
    scores = pd.DataFrame({"method": ["ce", "ce", "x", "x"], "fold": [0, 1, 0, 1], "metric": "mcr",
                           "value": [0.5, 0.6, 0.55, 0.7]})
    t = C.effect_table(scores, [("x", "ce", "mcr", 3.0)], scale=100)
    assert t.loc[0, "our_effect"] == pytest.approx(7.5) and t.loc[0, "paper_effect"] == 3.0
    assert t.loc[0, "diffs"] == "+5.00 +10.00" and t.loc[0, "n_units"] == 2
    with pytest.raises(ValueError, match="method 'ldam'"):
        C.effect_table(scores, [("ldam", "ce", "mcr")])


def _result(root, paper, rows, ok=True):
    folder = root / "laptop" / paper
    C.write_claims(rows, folder)
    (folder / "run.json").write_text(json.dumps({"status": "ok" if ok else "failed",
                                                 "files": file_checksums(folder)}))
    return folder


def test_claims_cli_collects_whole_results_only(tmp_path, capsys):
    _result(tmp_path, "perturbed_input", [C.judge("perturbed_input", UP, C.Effect.from_diffs([1, 2, 3]))])
    bad = _result(tmp_path, "balanced_mixup", [C.judge("balanced_mixup", UP, C.Effect.from_diffs([1, 2]))])
    (bad / "claims.csv").write_text((bad / "claims.csv").read_text() + "\n")  # changed after the run
    (tmp_path / "laptop" / "care.failed").mkdir()
    assert main(["claims", "--profile", "laptop", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## perturbed_input" in out and "**supported**" in out and "1.00 [" not in out
    assert "2.00 [1.00, 3.00]" in out
    assert "balanced_mixup" in out and "left out" in out and "care" not in out
    page = (tmp_path / "laptop" / "CLAIMS.md").read_text()
    assert page.startswith("# Claims, profile `laptop`") and "supported: 1" in page


def test_claims_page_keeps_a_multi_line_note_in_its_row():
    row = C.judge("care", UP, None, note="dataset missing:\n1. download it\n2. unzip | move it")
    page = C.claims_page(pd.DataFrame([row]), "laptop")
    line = next(x for x in page.splitlines() if x.startswith("| up:"))
    assert line.endswith("; dataset missing: 1. download it 2. unzip / move it |") and line.count("|") == 9


def test_claims_cli_without_results(tmp_path, capsys):
    assert main(["claims", "--out", str(tmp_path)]) == 1
    assert "no results under" in capsys.readouterr().err
