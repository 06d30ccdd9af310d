"""DET plots: a valid PNG appears atomically; bad input writes nothing."""

import numpy as np
import pytest

from ssps.errors import SSPSError
from ssps.eval.report import plot_det, plot_det_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_det_plots(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.3
    plot_det(rng.normal(size=2000) + 2 * y, y, tmp_path / "one.png", title="one")
    systems = {"weak": (rng.normal(size=2000) + 0.2 * y, y), "perfect": (y.astype(float), y)}
    plot_det_curves(systems, tmp_path / "two.png")
    assert (tmp_path / "one.png").read_bytes()[:8] == PNG and (tmp_path / "two.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]  # no temporaries left


def test_det_plot_bad_input(tmp_path):
    with pytest.raises(SSPSError, match="no target trials"):
        plot_det([0.1, 0.2], [0, 0], tmp_path / "x.png")
    with pytest.raises(SSPSError, match="no systems"):
        plot_det_curves({}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
