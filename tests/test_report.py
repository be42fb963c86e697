"""kitlib.report: atomic files, tables, paper-vs-ours joins, figures, run records."""
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import kitlib  # noqa: E402
from kitlib import report as R  # noqa: E402


# ------------------------------------------------------------------ atomic writes

def test_atomic_write_creates_folders_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    assert R.atomic_write_text(path, "héllo\n") == path
    assert path.read_text(encoding="utf-8") == "héllo\n"
    R.atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["out.txt"]
    assert (path.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with R.atomic_path(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".csv") and tmp != path
            tmp.write_text("half-writ")
            raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.csv"]
    with R.atomic_path(path) as tmp:
        tmp.write_text("new\n")
        assert path.read_text() == "old\n"  # not visible before the block ends
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["table.csv"]


# ------------------------------------------------------------------ tables

def test_write_table_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"method": ["CE", "RW|x"], "mcr": [84.5432, np.nan], "n": [3, 5]})
    csv, md = R.write_table(df, tmp_path / "sub" / "table_eps0.001")
    assert (csv.name, md.name) == ("table_eps0.001.csv", "table_eps0.001.md")
    assert csv.read_text() == "method,mcr,n\nCE,84.54,3\nRW|x,,5\n"
    assert md.read_text() == (
        "| method | mcr | n |\n"
        "|:---|---:|---:|\n"
        "| CE | 84.54 | 3 |\n"
        "| RW\\|x |  | 5 |\n"
    )
    assert sorted(os.listdir(tmp_path / "sub")) == ["table_eps0.001.csv", "table_eps0.001.md"]


def test_write_table_named_index_and_float_format(tmp_path):
    df = pd.DataFrame({"acc": [0.12345]}, index=pd.Index(["ce"], name="method"))
    csv, md = R.write_table(df, tmp_path / "t", float_format="%.3f")
    assert csv.read_text() == "method,acc\nce,0.123\n"
    assert md.read_text().splitlines()[2] == "| ce | 0.123 |"
    with pytest.raises(TypeError, match="DataFrame"):
        R.write_table([1, 2], tmp_path / "x")


# ------------------------------------------------------------------ reference numbers

REF_CSV = """table,row,column,value,spread,note
table2,R50|CE,Skin7|MCR,70.50,1.20,
table2,R50|CE,Skin7|SCR,40.00,,no std printed
table2,R50|RS,Skin7|MCR,72.00,0.50,
table1,Skin7,classes,7,,
"""


def test_load_reference_types_and_filter(tmp_path):
    (tmp_path / "paperx.csv").write_text(REF_CSV)
    ref = R.load_reference("paperx", directory=tmp_path)
    assert list(ref.columns[:5]) == ["table", "row", "column", "value", "spread"]
    assert len(ref) == 4 and ref["value"].tolist() == [70.5, 40.0, 72.0, 7.0]
    assert np.isnan(ref["spread"][1]) and ref["note"][1] == "no std printed"
    t2 = R.load_reference("paperx", table="table2", directory=tmp_path)
    assert t2["row"].tolist() == ["R50|CE", "R50|CE", "R50|RS"]
    with pytest.raises(ValueError, match="no table 'table9'"):
        R.load_reference("paperx", table="table9", directory=tmp_path)


def test_load_reference_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        R.load_reference("missing", directory=tmp_path)
    (tmp_path / "bad.csv").write_text("table,row,value\nt,r,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv lacks columns \['column', 'spread'\]"):
        R.load_reference("bad", directory=tmp_path)
    (tmp_path / "nan.csv").write_text("table,row,column,value,spread\nt,r,c,1.0,\nt,r,d,abc,\n")
    with pytest.raises(ValueError, match=r"nan\.csv, line 3: value 'abc'"):
        R.load_reference("nan", directory=tmp_path)
    (tmp_path / "dup.csv").write_text("table,row,column,value,spread\nt,r,c,1,\nt,r,c,2,\n")
    with pytest.raises(ValueError, match="more than once"):
        R.load_reference("dup", directory=tmp_path)


def test_reference_dir_is_beside_the_package():
    assert R.reference_dir() == Path(kitlib.__file__).resolve().parents[1] / "results" / "reference"
    with pytest.raises(FileNotFoundError, match=r"results/reference/no_such_paper\.csv"):
        R.load_reference("no_such_paper")


def test_paper_vs_ours_join_and_diff(tmp_path):
    (tmp_path / "p.csv").write_text(REF_CSV)
    ref = R.load_reference("p", table="table2", directory=tmp_path)
    ours = pd.DataFrame({
        "table": ["table2", "table2", "table2"],
        "row": ["R50|RS", "R50|CE", "R50|LDAM"],  # other order, one row the paper lacks
        "column": ["Skin7|MCR", "Skin7|MCR", "Skin7|MCR"],
        "value": [0.7312, 0.695, 0.60],
        "spread": [0.011, np.nan, 0.02],
    })
    out = R.paper_vs_ours(ref, ours, scale=100)
    assert list(out.columns) == ["table", "row", "column", "paper", "ours", "diff"]
    assert out["row"].tolist() == ["R50|CE", "R50|CE", "R50|RS", "R50|LDAM"]
    assert out["column"].tolist() == ["Skin7|MCR", "Skin7|SCR", "Skin7|MCR", "Skin7|MCR"]
    assert out["paper"].tolist() == ["70.50 (1.20)", "40.00", "72.00 (0.50)", ""]
    assert out["ours"].tolist() == ["69.50", "", "73.12 (1.10)", "60.00 (2.00)"]
    np.testing.assert_allclose(out["diff"], [-1.0, np.nan, 1.12, np.nan], atol=1e-9)
    # other column names on our side, no spread column
    mine = ours.rename(columns={"value": "mean"}).drop(columns="spread")
    out2 = R.paper_vs_ours(ref, mine, value_col="mean", scale=100, digits=1)
    assert out2["ours"].tolist() == ["69.5", "", "73.1", "60.0"]
    with pytest.raises(ValueError, match="ours lacks columns"):
        R.paper_vs_ours(ref, ours.drop(columns="value"))


# ------------------------------------------------------------------ figures

def _assert_png_pdf(png, pdf):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_save_figure_writes_png_pdf_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png, pdf = R.save_figure(fig, tmp_path / "figs" / "line_eps0.01", dpi=50)
    assert (png.name, pdf.name) == ("line_eps0.01.png", "line_eps0.01.pdf")
    _assert_png_pdf(png, pdf)
    assert not plt.fignum_exists(fig.number)
    assert sorted(os.listdir(png.parent)) == [pdf.name, png.name]


def test_plot_per_class_bars(tmp_path):
    rec = pd.DataFrame({"CE": [0.9, 0.5, 0.2], "CE+P": [0.85, 0.6, 0.4]})
    fig = R.plot_per_class_bars(rec, ["NV", "MEL", "DF"], title="Recall")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [90, 50, 20, 85, 60, 40])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["NV", "MEL", "DF"]
    assert ax.get_title() == "Recall" and "%" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CE", "CE+P"]
    _assert_png_pdf(*R.save_figure(fig, tmp_path / "bars", dpi=50))
    with pytest.raises(ValueError, match="2 class_names for 3 rows"):
        R.plot_per_class_bars(rec, ["a", "b"])


def test_plot_curves_with_baselines(tmp_path):
    df = pd.DataFrame({
        "eps": [1e-4, 1e-3, 1e-2] * 4,
        "mcr": np.linspace(50, 61, 12),
        "method": ["CE"] * 6 + ["RW"] * 6,
        "fold": [0, 0, 0, 1, 1, 1] * 2,
    })
    fig = R.plot_curves(df, "eps", "mcr", "method", logx=True, baselines={"CE": 49.0, "RW": 52.0},
                        title="ε sweep", xlabel="ε", ylabel="MCR (%)")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "MCR (%)" and ax.get_xlabel() == "ε"
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_ydata()[0] for ln in dashed) == [49.0, 52.0]
    # each baseline shares its method's colour
    ce_line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"][0]
    ce_base = [ln for ln in dashed if ln.get_ydata()[0] == 49.0][0]
    assert matplotlib.colors.same_color(ce_line.get_color(), ce_base.get_color())
    # two folds per point are averaged: CE at eps=1e-4 is mean(50, 53)
    np.testing.assert_allclose(ce_line.get_ydata()[0], (df["mcr"][0] + df["mcr"][3]) / 2)
    assert "CE (baseline)" in [t.get_text() for t in ax.get_legend().get_texts()]
    _assert_png_pdf(*R.save_figure(fig, tmp_path / "curves", dpi=50))
    with pytest.raises(ValueError, match="not in df"):
        R.plot_curves(df, "eps", "auc", "method")


def test_plot_class_histogram_sorted(tmp_path):
    fig = R.plot_class_histogram([5, 100, 20], ["a", "b", "c"], title="Skin7")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [100, 20, 5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "c", "a"]
    assert ax.get_title() == "Skin7" and ax.get_ylabel() == "Number of images"
    fig2 = R.plot_class_histogram({"x": 3, "y": 9}, sort=False, logy=True)
    assert [t.get_text() for t in fig2.axes[0].get_xticklabels()] == ["x", "y"]
    assert fig2.axes[0].get_yscale() == "log"
    _assert_png_pdf(*R.save_figure(fig, tmp_path / "hist", dpi=50))
    plt.close(fig2)


# ------------------------------------------------------------------ run records

def test_run_record_fields():
    rec = R.run_record({"lr": 0.01, "epochs": 2}, extra={"wall_s": 1.5})
    assert rec["config"] == {"lr": 0.01, "epochs": 2}
    assert set(rec["versions"]) >= {"torch", "torchvision", "numpy", "sklearn", "kitlib"}
    assert rec["versions"]["numpy"] == np.__version__
    assert rec["versions"]["kitlib"] == kitlib.__version__
    assert rec["python"].count(".") == 2 and rec["platform"]
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40
    assert rec["device"] == "cpu" or isinstance(rec["device"], str)
    assert rec["timestamp"].endswith("+00:00") and rec["wall_s"] == 1.5
    with pytest.raises(ValueError, match="clashes"):
        R.run_record({}, extra={"device": "x"})


def test_write_json_handles_numpy_paths_nan(tmp_path):
    obj = {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(3), "d": Path("/x/y"),
           "e": float("nan"), "f": (1, np.bool_(True)), 7: "int key"}
    path = R.write_json(tmp_path / "r" / "run.json", obj)
    text = path.read_text()
    assert json.loads(text) == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": "/x/y", "e": None,
                                "f": [1, True], "7": "int key"}
    assert "NaN" not in text
    with pytest.raises(TypeError, match="object"):
        R.write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
