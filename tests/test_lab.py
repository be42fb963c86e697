"""JupyterLab as a front end: parameters collected whatever the cell order, the cell's profile is the profile
that runs, and the committed notebooks hold no outputs."""
import json
from pathlib import Path

import pytest

from kitlib import profiles
from kitlib.params import ParameterError
from kitlib.papers import perturbed_input as pi
from kitlib.reproduce import PAPERS, notebook_defaults

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NB01 = NOTEBOOKS / PAPERS["perturbed_input"]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_hold_no_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (make lab sets up nbstripout)"


def test_profile_in_the_cell_is_the_profile_that_runs(capsys):
    cell = {**notebook_defaults(NB01), "__name__": "__main__", "profile": "laptop", "epochs": 3}
    config = pi.PARAMETERS.check(cell)
    laptop = profiles.get("perturbed_input", "laptop")
    assert config["profile"] == "laptop" and config["datasets"] == laptop["datasets"]
    assert config["epochs"] == laptop["epochs"]  # the profile's value, exactly as reproduce --profile laptop
    out = capsys.readouterr().out
    assert "profile 'laptop' applied" in out and f"epochs: 3 -> {laptop['epochs']}" in out


def test_overrides_win_over_the_profile_and_are_checked(capsys):
    cell = {**notebook_defaults(NB01), "profile": "laptop", "overrides": {"epochs": 3}}
    assert pi.PARAMETERS.check(cell)["epochs"] == 3
    assert capsys.readouterr().out == ""  # only a kernel's globals are told
    with pytest.raises(ParameterError, match="'epochz' is not a parameter"):
        pi.PARAMETERS.check({**cell, "overrides": {"epochz": 3}})
    with pytest.raises(ParameterError, match="parameter 'epochs'"):
        pi.PARAMETERS.check({**cell, "overrides": {"epochs": 0}})


def test_second_run_all_records_every_parameter():
    cell = {**notebook_defaults(NB01), "__name__": "__main__"}
    first = pi.PARAMETERS.check(cell)
    cell.update(first, epochs=2)  # Run All again after editing one value: globals already hold everything
    second = pi.PARAMETERS.check(cell)
    assert set(second) == set(pi.PARAMETERS) and second["epochs"] == 2
