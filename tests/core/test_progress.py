"""Progress output: a block's log collapsed to one line in a notebook, untouched elsewhere."""
import sys

import pytest

from rlbff_lib.core import progress


class FakeHandle:
    def __init__(self):
        self.shown = []

    def update(self, obj, raw=False):
        self.shown.append(obj["text/plain"])


@pytest.fixture
def notebook(monkeypatch):
    """A stand-in for the IPython kernel: get_ipython() is not None, display() returns a handle."""
    import IPython
    import IPython.display

    handles = []

    def display(obj, raw=False, display_id=None):
        handles.append(FakeHandle())
        handles[-1].shown.append(obj["text/plain"])
        return handles[-1]

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.delenv("RLBFF_PAPERMILL", raising=False)
    return handles


def test_outside_a_notebook_lines_pass_through(capsys):
    with progress.collapsed("training"):
        print("step 1")
    assert capsys.readouterr().out == "step 1\n"


def test_in_a_notebook_the_log_becomes_one_line_and_goes_to_the_file(notebook, capsys, tmp_path):
    log = tmp_path / "logs" / "train.log"
    with progress.collapsed("scalar RM", log_path=log):
        for i in range(30):
            print(f"[scalar] step {i + 1}/30 loss {1 / (i + 1):.3f}")
        print("partial line without newline", end="")
    assert capsys.readouterr().out == ""  # nothing printed as lines into the notebook
    (handle,) = notebook
    final = handle.shown[-1]
    assert final.startswith("scalar RM: done ") and "31 log lines" in final
    assert final.endswith("| partial line without newline")
    assert len(log.read_text().splitlines()) == 31
    assert sys.stdout is not None and not isinstance(sys.stdout, progress._LineCollapser)


def test_a_failing_block_shows_its_last_lines(notebook, capsys):
    with pytest.raises(RuntimeError, match="exited"):
        with progress.collapsed("bt"):
            for i in range(25):
                print(f"line {i}")
            raise RuntimeError("trainer exited with code 1")
    (handle,) = notebook
    assert handle.shown[-1].startswith("bt: FAILED after")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"line {i}" for i in range(5, 25)]  # the last 20 lines, for the reader of the failed notebook
