import numpy as np
import pytest

from mer_ray.data.sampling import uniform_indices


@pytest.mark.parametrize("n,t", [(1, 8), (3, 8), (8, 8), (9, 8), (40, 8), (1000, 16), (5, 1)])
def test_uniform_indices_properties(n, t):
    idx = uniform_indices(n, t)
    assert idx.dtype == np.int64 and len(idx) == t
    assert idx[0] == 0 and (t == 1 or idx[-1] == n - 1)
    assert np.all(np.diff(idx) >= 0) and idx.max() <= n - 1


def test_uniform_indices_formula():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    # short clips repeat frames instead of being dropped
    assert uniform_indices(3, 8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert uniform_indices(8, 8).tolist() == list(range(8))


def test_uniform_indices_rejects_empty():
    with pytest.raises(ValueError, match="empty span"):
        uniform_indices(0, 8)
    with pytest.raises(ValueError):
        uniform_indices(5, 0)
