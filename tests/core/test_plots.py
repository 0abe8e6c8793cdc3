"""Figures are saved atomically and, in a notebook, shown embedded with the path the Markdown export links."""
import matplotlib.pyplot as plt

from rlbff_lib.core import plots


def _fig():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def test_show_outside_a_notebook_saves_and_closes(tmp_path):
    fig = _fig()
    assert plots.show(fig, tmp_path / "figures" / "x.png", svg=True) is None
    assert (tmp_path / "figures" / "x.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figures" / "x.svg").exists()
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in (tmp_path / "figures").iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_show_in_a_notebook_embeds_the_saved_file_with_its_path(tmp_path, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, metadata=None: shown.append((obj, metadata)))
    monkeypatch.chdir(tmp_path)
    plots.show(_fig(), "figures/loss.png", "the loss")
    (image, meta), = shown
    assert image.data == (tmp_path / "figures" / "loss.png").read_bytes()  # exactly the saved file
    assert meta == {"rlbff": {"figure": "figures/loss.png", "caption": "the loss"}}
