"""Checks of the transcribed paper numbers in results/reference/*.csv.

Format rules (see results/reference/README.md) are checked for every CSV in the folder, so files added
later (care.csv, metric_learning.csv) are covered too; spot checks compare cells with the printed papers.
"""
import csv
import math
from pathlib import Path

import pandas as pd
import pytest

REF = Path(__file__).resolve().parents[1] / "results" / "reference"
HEADER = ["table", "row", "column", "value", "spread", "note"]
ALL_CSV = sorted(REF.glob("*.csv"))
OURS = ["perturbed_input", "balanced_mixup", "contrastive"]
DATASET_TABLES = {("perturbed_input", "table1")}  # row = dataset, column = field


def load(stem: str) -> pd.DataFrame:
    """The CSV as strings (empty cells stay ""), so values can be compared as printed."""
    return pd.read_csv(REF / f"{stem}.csv", dtype=str, keep_default_na=False)


def cell(df: pd.DataFrame, table: str, row: str, column: str) -> tuple[str, str]:
    hit = df[(df.table == table) & (df.row == row) & (df.column == column)]
    assert len(hit) == 1, f"expected one cell {table}/{row}/{column}, found {len(hit)}"
    return hit.value.iloc[0], hit.spread.iloc[0]


def test_our_files_exist():
    for stem in OURS:
        assert (REF / f"{stem}.csv").is_file(), f"missing results/reference/{stem}.csv"


@pytest.mark.parametrize("path", ALL_CSV, ids=lambda p: p.name)
def test_format(path):
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER, f"{path.name}: header must be {','.join(HEADER)}"
    body = rows[1:]
    assert body, f"{path.name}: no cells"
    for i, r in enumerate(body, start=2):
        assert len(r) == 6, f"{path.name} line {i}: {len(r)} fields"
        table, row, column, value, spread, _ = r
        assert table == "text" or (table.startswith("table") and table[5:].isdigit()), f"{path.name} line {i}: table {table!r}"
        assert row and column, f"{path.name} line {i}: empty row/column"
        assert math.isfinite(float(value)), f"{path.name} line {i}: value {value!r}"
        if spread:
            assert float(spread) >= 0, f"{path.name} line {i}: spread {spread!r}"
        for key in (row, column):
            assert key == key.strip() and key.count("|") <= 1, f"{path.name} line {i}: key {key!r}"
    keys = [tuple(r[:3]) for r in body]
    dup = {k for k in keys if keys.count(k) > 1}
    assert not dup, f"{path.name}: duplicate (table,row,column): {sorted(dup)[:5]}"


@pytest.mark.parametrize("stem", OURS)
def test_method_tables_use_two_part_keys(stem):
    df = load(stem)
    method = df[(df.table != "text") & ~df.table.map(lambda t: (stem, t) in DATASET_TABLES)]
    bad = method[~method.row.str.contains(r"^[^|]+\|[^|]+$") | ~method.column.str.contains(r"^[^|]+\|[^|]+$")]
    assert bad.empty, f"{stem}: keys not '<backbone>|<method>' / '<dataset>|<metric>':\n{bad.head()}"


@pytest.mark.parametrize(
    "stem,counts",
    [
        ("perturbed_input", {"table1": 18, "table2": 216, "text": 13}),
        ("balanced_mixup", {"table1": 48, "table2": 8, "table3": 48, "text": 8}),
        ("contrastive", {"table1": 18, "table2": 18, "table3": 30, "text": 15}),
    ],
)
def test_cell_counts(stem, counts):
    assert load(stem).table.value_counts().to_dict() == counts


# ---------------------------------------------------------------- paper 000
def test_p000_table2_shape():
    t2 = load("perturbed_input").query("table == 'table2'")
    backbones = t2.row.str.split("|").str[0]
    methods = t2.row.str.split("|").str[1]
    assert sorted(backbones.unique()) == ["DenseNet169", "MobileNetV2", "ResNet50"]
    base = ["CE", "RS", "RW", "FL", "DRS", "LDAM-DRW"]
    assert sorted(methods.unique()) == sorted(base + [m + "+ours" for m in base])
    assert set(t2.column) == {f"{d}|{m}" for d in ("Skin7", "OCTMNIST", "X-ray6") for m in ("MCR", "SCR")}
    assert (t2.groupby("row").size() == 6).all() and t2.row.nunique() == 36
    oct_ = t2.column.str.startswith("OCTMNIST")
    assert (t2.spread[oct_] == "").all(), "OCTMNIST has no spread in the paper"
    assert (t2.spread[~oct_] != "").all(), "Skin7 and X-ray6 cells all have a std"


@pytest.mark.parametrize(
    "table,row,column,value,spread",
    [
        ("table2", "ResNet50|CE", "Skin7|MCR", "84.54", "0.86"),
        ("table2", "ResNet50|CE", "OCTMNIST|MCR", "75.60", ""),
        ("table2", "ResNet50|RW", "X-ray6|SCR", "53.64", "6.68"),
        ("table2", "MobileNetV2|LDAM-DRW+ours", "X-ray6|SCR", "36.36", "23.40"),
        ("table2", "DenseNet169|LDAM-DRW+ours", "OCTMNIST|SCR", "63.20", ""),
        ("table2", "DenseNet169|DRS+ours", "Skin7|SCR", "82.64", "7.55"),
        ("table1", "Skin7", "largest", "6705", ""),
        ("table1", "X-ray6", "imbalance", "38.3", ""),
        ("text", "X-ray6", "smallest_test_per_fold", "22", ""),
        ("text", "ours", "X-ray6|eps", "0.0001", ""),
        ("text", "ours", "all|seconds_per_image", "0.283", ""),
        ("text", "baseline", "all|seconds_per_image", "0.107", ""),
    ],
)
def test_p000_spot(table, row, column, value, spread):
    assert cell(load("perturbed_input"), table, row, column) == (value, spread)


def test_p000_imbalance_is_largest_over_smallest():
    t1 = load("perturbed_input").query("table == 'table1'").pivot(index="row", columns="column", values="value")
    t1 = t1.astype(float)
    assert ((t1.largest / t1.smallest).round(1) == t1.imbalance).all()


def test_p000_recalls_are_counts_over_test_sizes():
    """X-ray6: SCR is a mean of k/22 over 5 folds -> 1.1*SCR is an integer; OCTMNIST (250 per class):
    SCR = k/250 -> multiple of 0.4, MCR = mean of 4 such recalls -> multiple of 0.1. Catches mistyped digits."""
    t2 = load("perturbed_input").query("table == 'table2'")
    val = t2.set_index(["row", "column"]).value.astype(float)

    def off_grid(column, factor, tol):
        x = val.xs(column, level="column") * factor
        return list(x[(x - x.round()).abs() > tol].index)

    assert off_grid("X-ray6|SCR", 1.1, 0.03) == []
    assert off_grid("OCTMNIST|SCR", 2.5, 1e-6) == []
    assert off_grid("OCTMNIST|MCR", 10, 1e-6) == []


# ---------------------------------------------------------------- paper 001
@pytest.mark.parametrize(
    "table,row,column,value",
    [
        ("table1", "MobileNetV2|class-sampling", "EyePACS|MCC", "49.34"),
        ("table1", "ResNeXt50|BalancedMixUp-a0.2", "EyePACS|quad_kappa", "80.78"),
        ("table1", "MobileNetV2|BalancedMixUp-a0.1", "EyePACS|kendall_tau", "74.05"),
        ("table2", "ResNeXt50|BalancedMixUp-a0.2", "Messidor-2|quad_kappa", "85.14"),
        ("table2", "published|Cost-sensitive", "EyePACS|quad_kappa", "78.71"),
        ("table3", "MobileNetV2|CB", "Hyper-Kvasir|MCC", "85.84"),
        ("table3", "ResNeXt50|BalancedMixUp-a0.2", "Hyper-Kvasir|macro_F1", "64.00"),
        ("table3", "MobileNetV2|BalancedMixUp-a0.3", "Hyper-Kvasir|B-ACC", "64.76"),
        ("text", "Hyper-Kvasir", "images", "10662"),
    ],
)
def test_p001_spot(table, row, column, value):
    assert cell(load("balanced_mixup"), table, row, column) == (value, "")


def test_p001_table2_repeats_table1_and_skips_dashes():
    df = load("balanced_mixup")
    assert cell(df, "table2", "ResNeXt50|BalancedMixUp-a0.2", "EyePACS|quad_kappa") == cell(
        df, "table1", "ResNeXt50|BalancedMixUp-a0.2", "EyePACS|quad_kappa"
    )
    mes = df[(df.table == "table2") & (df.column == "Messidor-2|quad_kappa")]
    assert "published|QWKL" not in set(mes.row) and "published|Iter-Aug" not in set(mes.row)


# ---------------------------------------------------------------- paper 002
@pytest.mark.parametrize(
    "table,row,column,value,spread",
    [
        ("table1", "ResNet50|CE", "ISIC2018|acc", "0.850", "0.0007"),
        ("table1", "ResNet50|LDAM", "ISIC2018|macro_F1", "0.734", "0.024"),
        ("table1", "ResNet50|CL+RS", "ISIC2018|macro_F1", "0.751", "0.016"),
        ("table1", "published|DANIL", "ISIC2018|acc", "0.825", ""),
        ("table2", "ResNet50|CE+RS", "APTOS2019|macro_F1", "0.583", "0.055"),
        ("table2", "published|CANet", "APTOS2019|macro_F1", "0.631", ""),
        ("table3", "ResNet50|CL-tau0.5", "ISIC2018|F1_minor", "0.575", ""),
        ("table3", "ResNet50|CL+RS-tau0.5", "ISIC2018|F1_minor", "0.720", ""),
        ("table3", "ResNet50|CL+RS-tau1.0", "ISIC2018|F1_middle", "0.623", ""),
        ("text", "ISIC2018", "images", "10015", ""),
    ],
)
def test_p002_spot(table, row, column, value, spread):
    assert cell(load("contrastive"), table, row, column) == (value, spread)


def test_p002_fractions_and_groups():
    df = load("contrastive")
    metrics = df[df.table != "text"].value.astype(float)
    assert metrics.between(0, 1).all(), "paper 002 reports fractions"
    groups = sum(int(cell(df, "text", "ISIC2018", f"{g}_classes")[0]) for g in ("major", "middle", "minor"))
    assert groups == int(cell(df, "text", "ISIC2018", "classes")[0]) == 7
