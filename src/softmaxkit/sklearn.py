"""scikit-learn adapter: temperature scaling as an estimator.

:class:`TemperatureScaling` takes a model's logits as its features (one column per
class) and learns the temperature of :func:`softmaxkit.fit_temperature`. Importing
this module imports scikit-learn (``pip install "softmaxkit[calibration]"``);
``import softmaxkit`` does not.

Examples
--------
>>> import numpy as np
>>> from softmaxkit.sklearn import TemperatureScaling
>>> logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
>>> scaler = TemperatureScaling().fit(logits, [0, 1, 2, 1])
>>> round(scaler.temperature_, 4)
2.2324
>>> scaler.predict(logits)
array([0, 1, 2, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'softmaxkit.sklearn needs scikit-learn >= 1.6: pip install "softmaxkit[calibration]"'
    ) from error

from ._lib._typing import ArrayLike, Real
from ._logsumexp import logsumexp
from ._softmax import log_softmax, softmax
from .calibration import fit_temperature

__all__ = ["TemperatureScaling"]


class TemperatureScaling(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Temperature scaling of logits (Guo, Pleiss, Sun & Weinberger 2017).

    A post-hoc calibrator: ``X`` holds a trained model's logits on held-out data,
    one column per class, and ``fit`` learns the temperature ``T`` that minimises
    the negative log-likelihood of ``y`` under ``softmax(X / T)``. It changes no
    prediction, only the probabilities.

    Parameters
    ----------
    bounds : (float, float), default (0.01, 100)
        The range of temperatures searched (see :func:`softmaxkit.fit_temperature`).

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    classes_ : ndarray of shape (n_classes,)
        The class of each column of ``X``. With as many distinct labels in ``y`` as
        columns, the sorted labels (any type, as scikit-learn's classifiers order
        them); otherwise ``y`` must hold column indices and ``classes_`` is
        ``arange(n_features_in_)``.
    n_features_in_ : int
        The number of columns (classes) of ``X``.
    feature_names_in_ : ndarray of str
        The column names, when ``X`` is a DataFrame with string column names.

    Notes
    -----
    ``score`` is the mean log-likelihood (the negative NLL, scikit-learn's
    ``neg_log_loss``: greater is better), not the accuracy of
    ``ClassifierMixin.score``, which temperature scaling cannot change;
    ``cross_val_score`` and grid searches then compare calibrations.
    ``transform`` gives the calibrated logits ``X / T``, for a next step of a
    ``Pipeline``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from softmaxkit.sklearn import TemperatureScaling
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=600)
    >>> logits = 5.0 * (rng.normal(size=(600, 3)) + np.eye(3)[y])   # over-confident
    >>> scores = cross_val_score(TemperatureScaling(), logits, y, cv=3)
    >>> bool(np.all(scores > -1.0)), bool(TemperatureScaling().fit(logits, y).temperature_ > 3)
    (True, True)
    """

    def __init__(self, bounds: Sequence[Real] = (1e-2, 1e2)) -> None:
        self.bounds = bounds

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # The predictions are the arg max of the input columns: a calibrator learns no
        # decision, so arbitrary features score poorly.
        tags.classifier_tags.poor_score = True
        return tags

    def _columns_of(self, y, n_columns):
        """The column index of each label in ``y``, and the classes of the columns."""
        classes, index = np.unique(y, return_inverse=True)
        if classes.size == n_columns:
            return index, classes
        if np.issubdtype(classes.dtype, np.integer) or (
            np.issubdtype(classes.dtype, np.floating) and np.all(classes == np.round(classes))
        ):
            if classes[0] >= 0 and classes[-1] < n_columns:
                return np.asarray(y, dtype=np.int64), np.arange(n_columns)
        raise ValueError(
            f"X must hold one column of logits per class: y has {classes.size} classes "
            f"but X has {n_columns} columns (y may also hold column indices in "
            f"[0, {n_columns}))"
        )

    def fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> TemperatureScaling:
        """Fit the temperature to the logits ``X`` and the labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_classes)
            Logits, one column per class.
        y : array-like of shape (n_samples,)
            The labels: ``n_classes`` distinct values, or column indices.
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if X.shape[1] < 2:
            raise ValueError(
                f"X must hold one column of logits per class, at least 2; got "
                f"{X.shape[1]} feature(s)"
            )
        index, self.classes_ = self._columns_of(y, X.shape[1])
        weight = None if sample_weight is None else _check_sample_weight(sample_weight, X)
        self.temperature_ = fit_temperature(X, index, weight=weight, bounds=self.bounds)
        return self

    def _logits(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X / X.dtype.type(self.temperature_)

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The calibrated logits ``X / temperature_``.

        Examples
        --------
        Two of three samples right with logit 2 against 0: the NLL
        ``3 log(exp(2/T) + 1) - 4/T`` is least at ``exp(2/T) = 2``.

        >>> import math
        >>> import numpy as np
        >>> from softmaxkit.sklearn import TemperatureScaling
        >>> model = TemperatureScaling().fit([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], [0, 1, 1])
        >>> math.isclose(model.temperature_, 2 / math.log(2), rel_tol=1e-10)
        True
        >>> bool(np.allclose(model.transform([[1.0, 0.0]]), [[math.log(2) / 2, 0.0]]))
        True
        """
        return self._logits(X)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """The calibrated logits, as scikit-learn's classifiers give them.

        One column per class, or for two classes the calibrated log-odds of the second,
        ``(X[:, 1] - X[:, 0]) / temperature_`` (shape ``(n_samples,)``).
        """
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Calibrated probabilities ``softmax(X / temperature_)``, columns in ``classes_``."""
        return softmax(self._logits(X))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Calibrated log-probabilities ``log_softmax(X / temperature_)``."""
        return log_softmax(self._logits(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The class of the largest logit of each row (unchanged by the temperature)."""
        column = np.argmax(self._logits(X), axis=1)
        return self.classes_[column]

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """The mean log-likelihood of ``y``: ``-NLL`` (greater is better).

        Examples
        --------
        >>> import math
        >>> from softmaxkit.sklearn import TemperatureScaling
        >>> model = TemperatureScaling().fit([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], [0, 1, 1])
        >>> math.isclose(model.score([[0.0, 0.0]], [0]), -math.log(2))
        True
        """
        logits = self._logits(X)
        y = np.asarray(y)
        if y.shape != (logits.shape[0],):
            raise ValueError(f"y must hold one label per row of X, got shape {y.shape}")
        column = {value.item() if hasattr(value, "item") else value: k
                  for k, value in enumerate(self.classes_)}
        try:
            index = np.array([column[v.item() if hasattr(v, "item") else v] for v in y])
        except KeyError as error:
            raise ValueError(f"y holds a label not seen in fit: {error.args[0]!r}") from None
        log_likelihood = logits[np.arange(index.size), index] - logsumexp(logits, axis=1)
        weight = np.ones(index.size)
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, logits)
        if not weight.sum() > 0:
            raise ValueError("sample_weight must have a positive sum")
        return float(np.dot(weight, log_likelihood) / weight.sum())
