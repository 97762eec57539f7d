"""The scalar options of the filters: checked once, the neutral values made None."""

from __future__ import annotations

import numbers

from .._lib._validation import check_fraction, check_int

FILTERS = ("temperature", "top_k", "top_p", "min_p", "typical_p")


def _check_order(order, options):
    if isinstance(order, str) or not isinstance(order, (tuple, list)):
        raise TypeError(f"order must be a tuple of filter names, got {order!r}")
    for name in order:
        if name not in FILTERS:
            raise ValueError(
                f"order contains {name!r}, which is not one of {', '.join(map(repr, FILTERS))}"
            )
    if len(set(order)) != len(order):
        raise ValueError(f"order contains a repeated entry: {tuple(order)!r}")
    for name, active in options.items():
        if active and name not in order:
            raise ValueError(f"{name} is set, but {name!r} is missing from order={tuple(order)!r}")
    return tuple(order)


def _neutral(value, neutral):
    return None if value == neutral else value


def _validated(order, temperature, top_k, top_p, min_p, typical_p, min_tokens_to_keep):
    """``order`` and a dict of the checked options; those set to the value that removes
    nothing become None.

    As in Hugging Face's ``generate()``, ``top_k=0``, ``top_p=1`` and ``typical_p=1``
    mean no filter (and so does ``min_p=0``, which removes nothing), whether or not
    ``order`` names them. ``top_k`` is returned as ``max(top_k, min_tokens_to_keep)``,
    as ``TopKLogitsWarper`` takes it.
    """
    min_tokens_to_keep = check_int("min_tokens_to_keep", min_tokens_to_keep, low=1)
    if top_k is not None:
        # 0 means no top-k filter, as in Hugging Face.
        top_k = _neutral(check_int("top_k", top_k, low=0), 0)
    if top_k is not None:
        top_k = max(top_k, min_tokens_to_keep)
    if top_p is not None:
        top_p = _neutral(check_fraction("top_p", top_p, allow_zero=False), 1.0)
    if min_p is not None:
        min_p = _neutral(check_fraction("min_p", min_p, allow_zero=True), 0.0)
    if typical_p is not None:
        typical_p = _neutral(check_fraction("typical_p", typical_p, allow_zero=False), 1.0)
    options = {"top_k": top_k, "top_p": top_p, "min_p": min_p, "typical_p": typical_p}
    is_default_temperature = isinstance(temperature, numbers.Real) and temperature == 1
    active = {"temperature": not is_default_temperature}
    active.update((name, value is not None) for name, value in options.items())
    order = _check_order(order, active)
    options["min_tokens_to_keep"] = min_tokens_to_keep
    return order, options
