"""softmaxkit.keras.Softmax on every Keras backend (each in a subprocess with KERAS_BACKEND
set, since Keras picks its backend once per process): values against softmaxkit on NumPy,
the edge rows, masks, training in a Sequential model, and a .keras file round trip."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed", allow_module_level=True)

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

CHECK = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import numpy as np
    import keras
    import softmaxkit as smk
    from softmaxkit.keras import Softmax

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    report = {}
    rng = np.random.default_rng(0)

    # Values: softmaxkit's NumPy softmax at the same temperature, on two axes.
    x = (4 * rng.normal(size=(6, 5))).astype("float32")
    got = keras.ops.convert_to_numpy(Softmax(temperature=2.5)(x))
    expected = smk.softmax(x.astype("float64"), temperature=2.5)
    report["values"] = float(np.max(np.abs(got - expected)))
    got = keras.ops.convert_to_numpy(Softmax(axis=0, temperature=0.5)(x))
    report["values_axis0"] = float(np.max(np.abs(got - smk.softmax(x.astype("float64"), axis=0,
                                                                  temperature=0.5))))

    # The edge rows and a mask.
    inf, nan = float("inf"), float("nan")
    edge = np.array([[0, -inf, 1], [-inf, -inf, -inf], [inf, 0, inf], [nan, 0, 1],
                     [1000, 0, -1000]], dtype="float32")
    report["edges"] = keras.ops.convert_to_numpy(Softmax()(edge)).tolist()
    mask = np.array([[True, False, True]] * 4 + [[False, False, False]])
    report["masked"] = keras.ops.convert_to_numpy(Softmax()(edge, mask=mask)).tolist()
    # A float16 layer computes in float32 and returns float16.
    result = Softmax(dtype="float16")(keras.ops.convert_to_tensor(x, dtype="float16"))
    report["half_dtype"] = keras.backend.standardize_dtype(result.dtype)
    expected = smk.softmax(x.astype("float16").astype("float64"))
    got = keras.ops.convert_to_numpy(result).astype("float64")
    # in units of half an ulp of float16 (subnormals have a fixed spacing of 2**-24)
    half_ulp = np.maximum(expected * 2.0**-11, 2.0**-25)
    report["half_error"] = float(np.max(np.abs(got - expected) / half_ulp))

    # Training: a Sequential model with the layer last; the loss goes down.
    features = rng.normal(size=(256, 5)).astype("float32")
    classes = (features @ rng.normal(size=(5, 3))).argmax(axis=1)
    targets = keras.utils.to_categorical(classes, 3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3), Softmax(temperature=2.0)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    report["losses"] = model.fit(features, targets, epochs=4, batch_size=32, verbose=0
                                 ).history["loss"]
    before = model.predict(features, verbose=0)
    # The layer really is the softmax of the dense layer's output at T = 2.
    dense = model.layers[0]
    z = features @ keras.ops.convert_to_numpy(dense.kernel) + keras.ops.convert_to_numpy(dense.bias)
    report["model_values"] = float(np.max(np.abs(before - smk.softmax(z.astype("float64"),
                                                                     temperature=2.0))))

    # A .keras file round trip.
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[-1]
    report["loaded_type"] = type(layer).__module__ + "." + type(layer).__name__
    report["loaded_config"] = {"axis": layer.axis, "temperature": layer.temperature}
    after = loaded.predict(features, verbose=0)
    report["loaded_difference"] = float(np.max(np.abs(after - before)))
    print("REPORT " + json.dumps(report))
    """
)


@pytest.mark.parametrize("backend_name", sorted(BACKEND_MODULES))
def test_layer_on_each_backend(backend_name):
    if importlib.util.find_spec(BACKEND_MODULES[backend_name]) is None:
        pytest.skip(f"{BACKEND_MODULES[backend_name]} is not installed")
    environment = {**os.environ, "KERAS_BACKEND": backend_name, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=environment,
        timeout=600,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT ") :])
    assert report["values"] < 2e-7
    assert report["values_axis0"] < 2e-7
    edges = np.array(report["edges"], dtype=float)
    np.testing.assert_allclose(edges[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(edges[1], [0, 0, 0])  # all -inf: zeros, not NaN
    np.testing.assert_array_equal(edges[2], [0.5, 0, 0.5])  # +inf entries share the mass
    assert np.isnan(edges[3]).all()  # NaN poisons its row
    np.testing.assert_array_equal(edges[4], [1, 0, 0])
    masked = np.array(report["masked"], dtype=float)
    np.testing.assert_allclose(masked[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(masked[2], [0.5, 0, 0.5])
    np.testing.assert_array_equal(masked[4], [0, 0, 0])  # every entry masked: zeros
    assert report["half_dtype"] == "float16"
    assert report["half_error"] <= 1.001  # rounded once to float16 (after float32)
    losses = report["losses"]
    assert losses[-1] < 0.8 * losses[0]
    assert report["model_values"] < 1e-5
    assert report["loaded_type"] == "softmaxkit.keras.Softmax"
    assert report["loaded_config"] == {"axis": -1, "temperature": 2.0}
    assert report["loaded_difference"] == 0.0


def test_configuration_and_bad_arguments():
    keras = pytest.importorskip("keras")
    from softmaxkit.keras import Softmax

    layer = Softmax(axis=1, temperature=0.25, name="calibrated")
    config = layer.get_config()
    assert config["axis"] == 1 and config["temperature"] == 0.25 and config["name"] == "calibrated"
    rebuilt = Softmax.from_config(config)
    assert (rebuilt.axis, rebuilt.temperature, rebuilt.name) == (1, 0.25, "calibrated")
    serialized = keras.saving.serialize_keras_object(layer)
    assert keras.saving.deserialize_keras_object(serialized).temperature == 0.25
    for temperature, message in (
        (0, "temperature must be > 0, got 0.0"),
        (-1.0, "temperature must be > 0, got -1.0"),
        (float("inf"), "temperature must be finite, got inf"),
        (float("nan"), "temperature must be > 0, got nan"),
    ):
        with pytest.raises(ValueError, match=message):
            Softmax(temperature=temperature)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        Softmax(temperature="2")
    with pytest.raises(TypeError, match="axis must be an int"):
        Softmax(axis=1.0)


def test_import_softmaxkit_does_not_import_keras():
    code = "import sys, softmaxkit; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "[]"
    code = "import sys, softmaxkit.keras; print('keras' in sys.modules)"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )
    assert output.stdout.strip().splitlines()[-1] == "True"


def test_calibrating_a_keras_model_with_a_fitted_temperature():
    """The workflow of the docs: fit T on held-out logits, put it in the layer."""
    keras = pytest.importorskip("keras")
    import softmaxkit as smk
    from softmaxkit.keras import Softmax

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=500)
    logits = (4 * (rng.normal(size=(500, 3)) + np.eye(3)[labels])).astype("float32")
    t = smk.fit_temperature(logits, labels)
    probabilities = keras.ops.convert_to_numpy(Softmax(temperature=t)(logits))
    np.testing.assert_allclose(
        probabilities, smk.softmax(logits.astype(np.float64), temperature=t), atol=2e-7
    )
    assert smk.expected_calibration_error(probabilities.astype(np.float64), labels) < (
        smk.expected_calibration_error(logits, labels, from_logits=True)
    )
