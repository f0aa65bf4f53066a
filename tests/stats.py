"""Statistical assertions for sampler tests: tolerances from Monte Carlo standard errors."""

import numpy as np
from numpyro.diagnostics import effective_sample_size


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean of (chain, draw, ...) draws: sd / sqrt(ESS)."""
    draws = np.asarray(draws, dtype=np.float64)
    ess = effective_sample_size(draws)
    return draws.std(axis=(0, 1)) / np.sqrt(ess)


def assert_mean_close(draws, truth, z=4.0):
    """Each component's mean lies within ``z`` Monte Carlo standard errors of ``truth``."""
    draws = np.asarray(draws, dtype=np.float64)
    error = np.abs(draws.mean(axis=(0, 1)) - np.asarray(truth))
    tolerance = z * mcse_mean(draws)
    assert np.all(error < tolerance), f"|mean - truth| = {error} exceeds {z} MCSE = {tolerance}"


def assert_covariance_close(draws, mean, cov, z=4.0):
    """Each covariance entry is within ``z`` MCSE of the truth, the MCSE being that of the
    mean of the products (x_i - mu_i)(x_j - mu_j) over the draws."""
    draws = np.asarray(draws, dtype=np.float64)
    centred = draws - np.asarray(mean)
    products = centred[..., :, None] * centred[..., None, :]
    assert_mean_close(products, cov, z)
