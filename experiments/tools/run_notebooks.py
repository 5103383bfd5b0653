"""Executes the Colab notebooks here, on their real (not smoke) settings, and saves them with
their outputs and a note saying where those outputs came from.

    .venv/bin/pip install nbclient ipykernel   # the notebooks extra: pip install -e '.[notebooks]'
    .venv/bin/python experiments/tools/run_notebooks.py [colab/NAME.ipynb ...]

Each notebook runs in a fresh temporary folder (its runs, plots and data cache stay out of the
checkout) against this checkout (``FEDJAX_SIM_ROOT``), with the machine's own backend: on a
CPU-only machine the saved outputs are a CPU run's, and the note says so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile

from fedjax_sim.experiment.script import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NOTE_MARK = "<!-- outputs-note -->"


def machine() -> str:
    """``a CPU (2 cores, AMD EPYC 7B13), no GPU``, or the accelerator jax sees."""
    import jax

    backend = jax.default_backend()
    if backend != "cpu":
        return f"{jax.device_count()} x {jax.devices()[0].device_kind} ({backend})"
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    return f"a CPU ({os.cpu_count()} cores, {model}), no GPU"


def note_cell(notebook_name: str, where: str, minutes: float) -> dict:
    import nbformat

    text = (
        f"{NOTE_MARK}\n**The outputs saved below come from one run of this notebook on {where}**, "
        f"on its real settings (not the smoke ones), on {datetime.date.today().isoformat()}: "
        f"`python experiments/tools/run_notebooks.py colab/{notebook_name}`, {minutes:.1f} "
        "minutes for the whole notebook. In Colab the same cells run on the runtime's GPU or "
        "TPU; CI runs them on their smoke settings."
    )
    return nbformat.v4.new_markdown_cell(text)


def execute(path: str) -> float:
    """Runs ``path`` in place; returns the minutes it took."""
    import time

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if NOTE_MARK not in "".join(c.source)]
    os.environ["FEDJAX_SIM_ROOT"] = ROOT
    os.environ.pop("FEDJAX_SIM_SMOKE", None)
    # tqdm's text bar without ipywidgets (Colab has them): no warning in the saved outputs
    os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        # coalesce_streams: a progress bar's redraws saved as its last state, not one each
        client = NotebookClient(notebook, timeout=None, kernel_name="python3",
                                coalesce_streams=True,
                                resources={"metadata": {"path": folder}})  # fmt: skip
        client.execute()
    minutes = (time.monotonic() - start) / 60
    notebook.cells.insert(1, note_cell(os.path.basename(path), machine(), minutes))
    nbformat.write(notebook, path)
    return minutes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = sorted(os.path.join("colab", f) for f in os.listdir(os.path.join(ROOT, "colab"))
                     if f.endswith(".ipynb"))  # fmt: skip
    parser.add_argument("notebooks", nargs="*", default=default)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        full = os.path.join(ROOT, path)
        if not os.path.exists(full):
            known = ", ".join(default)
            raise ValueError(f"notebooks: no notebook {path!r}; the notebooks: {known}")
        print(f"{path}: {execute(full):.1f} min", flush=True)


if __name__ == "__main__":
    run_script(main)
