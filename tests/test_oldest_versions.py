"""The oldest declared versions: ``make test-oldest`` pins the floors of pyproject.toml.

The losses' NumPy paths must run on every NumPy the package declares: NumPy before 2.0
has no ``device`` argument and no ``np.astype``, which the fast cross-entropy path
called on the module itself. ``make test-oldest`` runs this suite on the floors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import softmaxkit as smk

CHECKOUT = Path(__file__).resolve().parents[1]


def _text(name):
    path = CHECKOUT / name
    if not path.is_file():
        pytest.skip(f"needs the checkout's {name}")
    return path.read_text()


def _make_variable(name):
    match = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", _text("Makefile"), re.M)
    assert match, f"Makefile has no {name}"
    return match.group(1).split()


def _floors(requirements):
    """``{name: version}`` of the ``name>=version`` entries of a TOML list of strings."""
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9.]+)"', requirements))


def _toml_list(key):
    match = re.search(rf"^{key} = \[(.*?)\]", _text("pyproject.toml"), re.M | re.S)
    assert match, f"pyproject.toml has no {key}"
    return match.group(1)


def test_the_oldest_pins_are_the_declared_floors():
    pins = dict(pin.split("==") for pin in _make_variable("OLDEST_PINS"))
    floors = _floors(_toml_list("dependencies")) | _floors(_toml_list("requires"))
    assert pins == floors


def test_the_oldest_python_is_the_declared_floor():
    floor = re.search(r'^requires-python = ">=([0-9.]+)"', _text("pyproject.toml"), re.M)
    assert floor
    major, minor = floor.group(1).split(".")
    makefile = _text("Makefile")
    assert f"python{major}.{minor}" in " ".join(_make_variable("PYTHON_OLDEST"))
    assert f"sys.version_info[:2] == ({major}, {minor})" in makefile


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [dict(), dict(softcap=3.0), dict(z_loss=1e-3)])
def test_cross_entropy_runs_on_the_installed_numpy(dtype, options):
    # Two logits against class 0, written out: z = c(x) (c the softcap, or none),
    # loss = lse(z) - z_0 + z_loss lse(z)**2, gradient ((1 + 2 z_loss lse) p - onehot) c'(x).
    x = np.array([1.0, 2.0])
    cap = options.get("softcap")
    z = x if cap is None else cap * np.tanh(x / cap)
    slope = np.ones(2) if cap is None else 1 - np.tanh(x / cap) ** 2
    lse = z[1] + math.log1p(math.exp(z[0] - z[1]))
    z_loss = options.get("z_loss", 0.0)
    p = np.exp(z - lse)
    expected_grad = ((1 + 2 * z_loss * lse) * p - [1.0, 0.0]) * slope
    logits = np.array([x], dtype=dtype)
    for weight in (None, np.array([2.0, 0.5])):
        loss, grad = smk.cross_entropy(
            logits, np.array([0]), weight=weight, return_grad=True, **options
        )
        assert loss.dtype == dtype and grad.dtype == dtype
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(loss, lse - z[0] + z_loss * lse**2, rtol=8 * eps)
        np.testing.assert_allclose(grad, [expected_grad], rtol=8 * eps)
        forward = smk.cross_entropy(logits, np.array([0]), weight=weight, **options)
        np.testing.assert_allclose(forward, loss, rtol=2 * eps)
