"""Nested prefixes, truncation and PCA behave as their definitions say."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec_lib.compress import PCAProjection, nested_dims, truncate


def test_nested_dims():
    assert nested_dims(576) == [576, 288, 144, 72, 36]
    assert nested_dims(64, 4) == [64, 32, 16]
    with pytest.raises(ValueError, match="divisible"):
        nested_dims(100, 16)
    with pytest.raises(ValueError, match="power of two"):
        nested_dims(96, 3)


def test_truncate_is_a_normalised_prefix():
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    t = truncate(x, 3)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(t * np.linalg.norm(x[:, :3], axis=1, keepdims=True), x[:, :3], rtol=1e-5)
    with pytest.raises(ValueError, match="d must be"):
        truncate(x, 9)
    with pytest.raises(ValueError, match="NaN"):
        truncate(np.full((2, 3), np.nan), 2)


def test_pca_finds_the_planted_subspace():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0][:, :2]  # a random 2-d plane in 16-d
    x = rng.normal(size=(500, 2)) @ basis.T * 5 + 0.01 * rng.normal(size=(500, 16)) + 3.0
    p = PCAProjection.fit(x, 2)
    assert p.explained.sum() > 0.99
    # the fitted directions span the planted plane
    np.testing.assert_allclose(np.linalg.svd(p.components @ basis)[1], 1, atol=1e-3)
    # inner products in the projection match those of the centred data, up to normalisation
    y = p.transform(x[:5])
    c = x[:5] - x.mean(0)
    ref = c / np.linalg.norm(c, axis=1, keepdims=True)
    np.testing.assert_allclose(y @ y.T, ref @ ref.T, atol=1e-3)
    with pytest.raises(ValueError, match="fitted on 16"):
        p.transform(x[:, :8])

