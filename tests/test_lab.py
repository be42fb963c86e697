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


# ----------------------------------------------------------------------------- JupyterLab in a real browser
# JupyterLab 4 on 127.0.0.1 with a throw-away root, each notebook opened in headless Chromium (Debian's
# `chromium` + `chromium-driver`) through Selenium, Run All at the smoke parameters. Skipped where the browser is
# missing, unless $KITLIB_REQUIRE_BROWSER=1 (.ci/run sets it and installs the browser): there it fails instead.
import importlib.util
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from kitlib.reproduce import PROGRESS_ENV, RESULTS_ENV

REQUIRE_BROWSER = "KITLIB_REQUIRE_BROWSER"
RUN_ALL_TIMEOUT = 900  # seconds per Run All; a smoke notebook takes 1-3 min on 2 cores


def _missing_browser_tools() -> list[str]:
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    missing += [mod for mod in ("selenium", "jupyterlab") if importlib.util.find_spec(mod) is None]
    return missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server and one headless Chromium page driven through `window.jupyterapp`."""

    def __init__(self, tmp: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.root, self.results = tmp / "root", tmp / "results"
        self.root.mkdir()
        for nb in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(nb, self.root)
        self.port, self.token = _free_port(), secrets.token_hex(8)
        env = {**os.environ, RESULTS_ENV: str(self.results), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
               "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "IPYTHONDIR": str(tmp / "ipython")}
        env.pop(PROGRESS_ENV, None)  # bars on, as for a user
        self.log = tmp / "lab.log"
        self.server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--ServerApp.root_dir={self.root}", f"--IdentityProvider.token={self.token}",
             "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp / 'settings'}",
             f"--LabApp.workspaces_dir={tmp / 'workspaces'}"],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while True:
            assert self.server.poll() is None, f"JupyterLab exited:\n{self.log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{self.url('api/status')}", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, f"JupyterLab did not answer in 180 s:\n{self.log.read_text()[-3000:]}"
                time.sleep(1)
        opts = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            opts.add_argument(arg)
        opts.binary_location = shutil.which("chromium")
        self.page = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        self.page.set_script_timeout(30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def js(self, script: str, *args):
        return self.page.execute_script(script, *args)

    def open(self, name: str) -> None:
        """Open notebook `name` and wait until its kernel is idle."""
        self.page.get(self.url(f"lab/tree/{name}"))
        deadline = time.time() + 180
        while self._kernel_status(name) != "idle":
            assert time.time() < deadline, f"{name}: kernel not idle after 180 s ({self._kernel_status(name)})"
            time.sleep(0.5)

    def _kernel_status(self, name: str) -> str:
        return self.js("""const a = window.jupyterapp, w = a && a.shell.currentWidget;
            if (!w || !w.context || w.context.path !== arguments[0] || !w.sessionContext.session) return 'loading';
            const k = w.sessionContext.session.kernel; return k ? k.status : 'no kernel';""", name)

    def run_all(self) -> float:
        """Run All (the Run menu's command) and wait until every cell ran or one failed; returns seconds. Counts the
        progress widgets rendered meanwhile in ``window.__bars``."""
        self.js("""window.__bars = 0;
            const seen = () => { if (document.querySelector('.jp-OutputArea-output .widget-hprogress')) window.__bars++; };
            window.__observer && window.__observer.disconnect();
            window.__observer = new MutationObserver(seen);
            window.__observer.observe(document.body, {subtree: true, childList: true});
            window.jupyterapp.commands.execute('notebook:run-all-cells');""")
        start, calm = time.time(), 0
        while calm < 3:  # not busy three polls in a row
            assert time.time() - start < RUN_ALL_TIMEOUT, f"Run All still busy after {RUN_ALL_TIMEOUT} s"
            time.sleep(1)
            busy = self.js("""const w = window.jupyterapp.shell.currentWidget;
                return w.sessionContext.session.kernel.status !== 'idle'
                    || [...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('*'));""")
            calm = 0 if busy else calm + 1
        return time.time() - start - calm

    def cells(self) -> list[dict]:
        """The open notebook's code cells as the model holds them (what autosave writes)."""
        return self.js("""const cells = window.jupyterapp.shell.currentWidget.content.model.cells, r = [];
            for (let i = 0; i < cells.length; i++) { const c = cells.get(i); if (c.type !== 'code') continue;
              r.push({source: c.sharedModel.getSource(), count: c.executionCount, outputs: c.outputs.toJSON(),
                      tags: (c.getMetadata && c.getMetadata('tags')) || []}); }
            return r;""")

    def set_source(self, code_index: int, source: str) -> None:
        self.js("""const cells = window.jupyterapp.shell.currentWidget.content.model.cells; let k = -1;
            for (let i = 0; i < cells.length; i++) { const c = cells.get(i); if (c.type === 'code' && ++k === arguments[0])
              { c.sharedModel.setSource(arguments[1]); return; } }""", code_index, source)

    def shutdown_kernel(self) -> None:
        self.js("return window.jupyterapp.shell.currentWidget.sessionContext.shutdown();")

    def close(self) -> None:
        self.page.quit()
        self.server.terminate()
        try:
            self.server.wait(20)
        except subprocess.TimeoutExpired:
            self.server.kill()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = _missing_browser_tools()
    if missing:
        why = (f"JupyterLab browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver; "
               f"pip install -e '.[test]'")
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"${REQUIRE_BROWSER}=1 but {why}")
        pytest.skip(why)
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.close()


def _check_run(name: str, cells: list[dict], bars: int) -> None:
    """No error, no stderr box, every cell executed, a progress widget was shown, figures present, and no bar left
    behind in the outputs autosave would write."""
    problems = []
    for i, c in enumerate(cells):
        if c["count"] is None:
            problems.append(f"cell {i} did not run")
        for o in c["outputs"]:
            if o["output_type"] == "error":
                problems.append(f"cell {i}: {o['ename']}: {o['evalue']}")
            elif o["output_type"] == "stream" and o["name"] == "stderr":
                problems.append(f"cell {i} wrote to stderr (a pink box in Lab): {''.join(o['text'])[:300]}")
            elif "application/vnd.jupyter.widget-view+json" in o.get("data", {}):
                problems.append(f"cell {i}: a finished progress widget stayed in the outputs")
    figures = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
    assert not problems, f"{name}: " + "; ".join(problems)
    assert figures > 0, f"{name}: no figure shown inline"
    assert bars > 0, f"{name}: no progress widget was rendered during Run All"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_lab_run_all(lab, name):
    lab.open(name)
    seconds = lab.run_all()
    cells = lab.cells()
    _check_run(name, cells, lab.js("return window.__bars"))
    print(f"{name}: Run All in JupyterLab {seconds:.0f} s")
    if name == PAPERS["perturbed_input"]:
        # Edit a parameter and Run All again without a restart: the record holds every parameter and the new value.
        k = next(i for i, c in enumerate(cells) if "parameters" in c["tags"])
        epochs = int(re.search(r"^epochs = (\d+)", cells[k]["source"], re.M).group(1))
        lab.set_source(k, re.sub(r"^epochs = \d+", f"epochs = {epochs + 1}", cells[k]["source"], flags=re.M))
        seconds = lab.run_all()
        _check_run(name, lab.cells(), lab.js("return window.__bars"))
        record = json.loads((lab.results / "smoke" / "perturbed_input" / "record.json").read_text())
        assert record["config"]["epochs"] == epochs + 1
        assert set(pi.PARAMETERS) <= set(record["config"]), set(pi.PARAMETERS) - set(record["config"])
        print(f"{name}: second Run All (epochs {epochs} -> {epochs + 1}) {seconds:.0f} s")
    lab.shutdown_kernel()


def test_lab_autosave_leaves_the_notebook_in_git_unchanged(tmp_path):
    """What `make lab` registers (nbstripout as the clean filter of notebooks/*.ipynb, .gitattributes): a notebook
    saved with outputs, as Lab autosaves it after Run All, is not a change for git; results/ notebooks keep theirs."""
    if importlib.util.find_spec("nbstripout") is None:
        pytest.skip("nbstripout not installed: pip install -e '.[lab]'")
    make = (NOTEBOOKS.parent / "Makefile").read_text()
    assert 'git config filter.nbstripout.clean "$(abspath $(PY)) -m nbstripout"' in make
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    git("config", "filter.nbstripout.clean", f"{sys.executable} -m nbstripout")
    git("config", "filter.nbstripout.smudge", "cat")
    shutil.copy(NOTEBOOKS.parent / ".gitattributes", tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "results").mkdir()
    clean = NB01.read_text()
    (tmp_path / "notebooks" / NB01.name).write_text(clean)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clean")
    nb = json.loads(clean)
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 1
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
    executed = json.dumps(nb, indent=1) + "\n"
    (tmp_path / "notebooks" / NB01.name).write_text(executed)
    (tmp_path / "results" / NB01.name).write_text(executed)
    # git status may still list the file (its size changed; git does not run the filter for that), but there is
    # nothing to diff and nothing to commit
    assert subprocess.run(["git", "diff", "--quiet"], cwd=tmp_path).returncode == 0
    git("add", "-A")
    assert git("diff", "--cached", "--name-only") == f"results/{NB01.name}\n"  # only the result is new
    assert '"42\\n"' in git("show", f":results/{NB01.name}")  # an executed result keeps its outputs
