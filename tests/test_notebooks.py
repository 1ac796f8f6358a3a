"""Every notebook runs top to bottom (nbclient, small settings via PRIME_NB_SMALL=1); a cell
error fails the test. The notebooks are committed without outputs and match notebooks/build.py."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_implicit_rewards.ipynb", "02_filter_and_advantages.ipynb", "03_poc_training.ipynb", "04_real_model.ipynb"]


def test_notebooks_are_committed_without_outputs_and_match_their_source():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_build", NOTEBOOKS / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    sources = {"01_implicit_rewards.ipynb": build.NB01, "02_filter_and_advantages.ipynb": build.NB02,
               "03_poc_training.ipynb": build.NB03, "04_real_model.ipynb": build.NB04}
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), name
        assert [c.source for c in nb.cells] == [src for _, src in sources[name]], f"{name}: run python notebooks/build.py"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tiny_dir, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("PRIME_NB_SMALL", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
