"""Reference numbers of paper 003 (CARE) and paper 004 (metric-learning two-stage).

Checks that results/reference/care.csv and results/reference/metric_learning.csv parse, follow the
kit's `table,row,column,value,spread,note` format, have the shapes of the paper's tables, and hold the
numbers printed in the papers (spot checks read by hand from the PDF text, plus identities the
papers themselves imply, e.g. a row repeated in two tables).
"""
import csv
from pathlib import Path

import pandas as pd
import pytest

REF = Path(__file__).resolve().parents[1] / "results" / "reference"
HEADER = ["table", "row", "column", "value", "spread", "note"]
FILES = ["care.csv", "metric_learning.csv"]

# (number of rows, number of columns, number of cells) per table, as laid out in our CSV.
SHAPES = {
    "care.csv": {
        "table1": (2, 7, 10),  # pretrain/finetune x 7 settings; 4 '-' cells of the pretrain row are absent
        "table2": (8, 6, 48),
        "table3": (4, 8, 32),
        "table4": (8, 6, 48),
        "table5": (6, 4, 24),
        "table6": (6, 4, 24),
        "table7": (4, 8, 32),
        "table8": (4, 2, 8),  # printed transposed: 2 metric rows x 4 box sources
        "table9": (6, 2, 12),  # printed transposed: 2 metric rows x 6 methods
        "table10": (4, 8, 32),
        "text": (4, 22, 25),  # numbers from the prose (not a printed table)
    },
    "metric_learning.csv": {
        "table1": (3, 6, 18),
        "table2": (21, 9, 189),
        "table3": (5, 6, 30),
        "table4": (12, 2, 24),  # 2 backbones x 6 methods, each cell printed 'All/Minor'
        "table5": (7, 8, 56),
        "text": (8, 8, 19),  # numbers from the prose (not a printed table)
    },
}


def load(name):
    return pd.read_csv(REF / name, dtype=str, keep_default_na=False)


def cell(df, table, row, column):
    hit = df[(df.table == table) & (df.row == row) & (df.column == column)]
    assert len(hit) == 1, f"{table} / {row} / {column}: {len(hit)} lines"
    return float(hit.value.iloc[0]), (float(hit.spread.iloc[0]) if hit.spread.iloc[0] else None)


@pytest.fixture(scope="module", params=FILES)
def ref(request):
    return request.param, load(request.param)


def test_header_and_plain_csv(ref):
    name, _ = ref
    with open(REF / name, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == HEADER
    assert all(len(r) == len(HEADER) for r in rows[1:]), "every line must have 6 fields"


def test_keys_unique_and_values_numeric(ref):
    name, df = ref
    dup = df[df.duplicated(["table", "row", "column"], keep=False)]
    assert dup.empty, f"{name}: duplicate keys\n{dup}"
    values = pd.to_numeric(df.value, errors="raise")
    assert values.notna().all()
    spreads = pd.to_numeric(df.spread[df.spread != ""], errors="raise")
    assert (spreads >= 0).all()
    assert set(df.table) == set(SHAPES[name])
    assert (df.row != "").all() and (df.column != "").all()


def test_table_shapes(ref):
    name, df = ref
    for table, (n_rows, n_cols, n_cells) in SHAPES[name].items():
        part = df[df.table == table]
        assert (part.row.nunique(), part.column.nunique(), len(part)) == (n_rows, n_cols, n_cells), table


def test_method_keys_follow_convention(ref):
    name, df = ref
    tables = df[df.table != "text"]
    datasets = {"care.csv": {"Skin7", "RSNA"},
                "metric_learning.csv": {"Skin7", "X-ray9", "PathMNIST-LT", "Flower-LT", "Stanford-Dogs-LT"}}[name]
    for col in tables[tables.table != "table1"].column.unique():
        ds, metric = col.split("|")
        assert ds in datasets and metric, col
    assert not df.row.str.contains("→").any(), "two-stage arrows must be written '->'"


# ---------------------------------------------------------------- paper 003: CARE
def test_care_spot_checks():
    df = load("care.csv")
    expect = [
        ("table2", "ResNet50|Baseline", "RSNA|minority_recall", 7.4),
        ("table2", "ResNet50|Baseline+CARE", "Skin7|minority_recall", 73.9),
        ("table2", "ResNet50|CSL+CARE", "RSNA|AUC", 0.769),
        ("table2", "ResNet50|DA", "Skin7|MCA", 54.4),
        ("table3", "ResNet50|Siamese", "Skin7|recall_DF", 21.7),
        ("table3", "ResNet50|Decouple+CARE", "Skin7|recall_VASC", 89.6),
        ("table4", "VGG19|CSL", "RSNA|AUC", 0.873),
        ("table4", "ResNet152|CSL+CARE", "Skin7|MCA", 81.9),
        ("table5", "alpha=0.9", "RSNA|minority_recall", 50.7),
        ("table6", "tau=1.0", "Skin7|minority_recall", 78.3),
        ("table7", "lambda=1.0", "Skin7|recall_DF", 86.9),
        ("table7", "lambda=1.3", "Skin7|MCA", 79.94),
        ("table8", "boxes=DSR", "Skin7|MCA", 77.02),
        ("table9", "FL|boxes=DeepLabV3", "Skin7|minority_recall", 82.6),
        ("table10", "masks=DF+VASC+AKIEC", "Skin7|recall_AKIEC", 74.24),
        ("table1", "finetune", "Skin7|tau", 0.7),
        ("table1", "pretrain", "Skin7|lr", 1e-4),
        ("text", "RSNA", "count_Lung_Opacity", 105),
        ("text", "Skin7", "count_NV", 6705),
    ]
    for table, row, column, value in expect:
        got, spread = cell(df, table, row, column)
        assert got == pytest.approx(value), (table, row, column)
        assert spread is None, "CARE reports no spread"


def test_care_internal_identities():
    """Rows the paper repeats across tables must carry the same numbers."""
    df = load("care.csv")
    # ResNet50 CSL+CARE: Table 2 row == Table 4 row (same model, all Table 4 models use CSL).
    for col in ["RSNA|minority_recall", "RSNA|AUC", "RSNA|MCA", "Skin7|minority_recall", "Skin7|AUC", "Skin7|MCA"]:
        assert cell(df, "table2", "ResNet50|CSL+CARE", col) == cell(df, "table4", "ResNet50|CSL+CARE", col)
    # CSL baseline: Table 5 alpha=0 == Table 6 baseline == Table 4 ResNet50|CSL (recall, MCA).
    for col in ["RSNA|minority_recall", "RSNA|MCA", "Skin7|minority_recall", "Skin7|MCA"]:
        a = cell(df, "table5", "alpha=0.0", col)[0]
        assert a == cell(df, "table6", "baseline", col)[0] == cell(df, "table4", "ResNet50|CSL", col)[0]
    # Table 8 (two decimals) rounds to Table 2's Skin7 Baseline / Baseline+CARE (one decimal).
    for key8, key2 in [("boxes=none", "ResNet50|Baseline"), ("boxes=GT", "ResNet50|Baseline+CARE")]:
        for col in ["Skin7|MCA", "Skin7|minority_recall"]:
            assert round(cell(df, "table8", key8, col)[0], 1) == cell(df, "table2", key2, col)[0]
    # Table 10 per-class recalls with two decimals are k/n for test counts DF 23, VASC 29, AKIEC 66.
    for n, cls in [(23, "DF"), (29, "VASC"), (66, "AKIEC")]:
        for v in df[(df.table == "table10") & (df.column == f"Skin7|recall_{cls}")].value.astype(float):
            k = round(v * n / 100)
            assert abs(100 * k / n - v) < 0.011, (cls, v)


# ---------------------------------------------------------------- paper 004: metric learning
def test_metric_learning_spot_checks():
    df = load("metric_learning.csv")
    expect = [
        ("table1", "Skin7", "smallest", 86, None),
        ("table1", "PathMNIST-LT", "largest", 9366, None),
        ("table1", "X-ray9", "imbalance", 38.1, None),
        ("table2", "ResNet50|CE", "Skin7|MCR_all", 83.12, 0.89),
        ("table2", "ResNet50|CE->cRW", "X-ray9|MCR_all", 51.81, 1.03),
        ("table2", "ResNet50|BBN", "X-ray9|MCR_minor", 61.53, None),
        ("table2", "ResNet50|CB-Focal->cRW", "X-ray9|MCR_minor", 55.16, None),
        ("table2", "ResNet50|CE+TP->cRW", "PathMNIST-LT|MCR_all", 86.50, 0.42),
        ("table2", "ResNet50|CE+SC->cRW", "Skin7|MCR_minor", 91.75, None),
        ("table3", "ResNet50|SC->cRW", "X-ray9|MCR_major", 54.05, None),
        ("table4", "DenseNet121|CE+TP->cRW", "Skin7|MCR_minor", 90.21, None),
        ("table4", "MobileNetV2|CE+SC->cRW", "Skin7|MCR_all", 86.26, None),
        ("table5", "ResNet50|CE+CT->cRW", "Stanford-Dogs-LT|MCR_minor", 21.19, None),
        ("table5", "ResNet50|CE+TP->cRW", "Flower-LT|MCR_medium", 91.50, None),
        ("text", "ResNet50|CE+SC->cRW", "all|coef_stable_high", 1.8, None),
        ("text", "Skin7", "minor_classes", 2, None),
    ]
    for table, row, column, value, spread in expect:
        got, got_spread = cell(df, table, row, column)
        assert got == pytest.approx(value), (table, row, column)
        assert got_spread == (None if spread is None else pytest.approx(spread)), (table, row, column)


def test_metric_learning_spread_only_on_table2_all():
    df = load("metric_learning.csv")
    with_spread = df[df.spread != ""]
    assert len(with_spread) == 21 * 3
    assert set(with_spread.table) == {"table2"}
    assert set(with_spread.column) == {"Skin7|MCR_all", "X-ray9|MCR_all", "PathMNIST-LT|MCR_all"}


def test_metric_learning_internal_identities():
    df = load("metric_learning.csv")
    # Table 1: rho = N_max / N_min, printed to one decimal (X-ray9 prints 38.1 for 3158/83 = 38.05,
    # hence a tolerance of 0.06 rather than exact rounding).
    for ds in ["Skin7", "X-ray9", "PathMNIST-LT"]:
        rho = cell(df, "table1", ds, "largest")[0] / cell(df, "table1", ds, "smallest")[0]
        assert abs(rho - cell(df, "table1", ds, "imbalance")[0]) < 0.06, ds
    # Table 3 rows CE, CE->cRW, CE+SC->cRW repeat Table 2.
    for key in ["ResNet50|CE", "ResNet50|CE->cRW", "ResNet50|CE+SC->cRW"]:
        for ds in ["Skin7", "X-ray9"]:
            for m in ["all", "major", "minor"]:
                col = f"{ds}|MCR_{m}"
                assert cell(df, "table3", key, col)[0] == cell(df, "table2", key, col)[0], (key, col)
