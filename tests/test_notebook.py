"""notebooks/explore.py, a jupytext notebook, executed in a real Jupyter kernel (nbclient), so it
never rots: every cell must run, and the figure and the comparison must come out."""

from __future__ import annotations

import jupytext
from framework_helpers.common import ROOT
from jupyter_client import KernelManager
from nbclient import NotebookClient


def test_the_explore_notebook_runs_every_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCO_RESULTS", str(tmp_path))  # the kernel inherits the environment
    notebook = jupytext.read(ROOT / "notebooks" / "explore.py")
    # IPC sockets in the test's own directory: the kernel listens on no TCP port at all
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"),
                           connection_file=str(tmp_path / "kernel.json"))
    NotebookClient(notebook, km=kernel, timeout=240,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "\n".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    assert "8 runs: 8 ran, 0 were already complete, 0 failed" in text
    assert "cellular_disco - no_balancers: +" in text and "(paired by replicate)" in text
    assert (tmp_path / "explore" / "cpu_utilization_by_policy.png").stat().st_size > 0
    warnings = [out["text"] for cell in notebook.cells if cell.cell_type == "code"
                for out in cell.get("outputs", []) if out.get("name") == "stderr"]
    assert warnings == []
