"""The float32 matmul precision policy (``numpyro_ebm._precision``): every reported energy,
potential and log density is traced with ``precision=HIGHEST`` on its matmuls, unless the caller
chose a precision; on a GPU it agrees with a float64 reference to float32 accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax

import numpyro_ebm as ne
from numpyro_ebm._precision import PRECISION, full_precision

DIM = 64
_A = np.random.default_rng(3).normal(size=(DIM, DIM))
PRECISION_MATRIX = (_A @ _A.T / DIM + 0.1 * np.eye(DIM)).astype(np.float32)
MEAN = np.linspace(-1.0, 1.0, DIM).astype(np.float32)
X = np.random.default_rng(4).normal(size=DIM).astype(np.float32)


def quadratic(x):
    d = x - MEAN
    return 0.5 * d @ PRECISION_MATRIX @ d


def model():
    x = numpyro.sample("x", dist.Normal(0.0, 3.0).expand([DIM]).to_event(1))
    ne.energy_factor("prior", quadratic, x)


def dot_precisions(fn, *args) -> list:
    """The ``precision`` of every ``dot_general`` in ``fn``'s jaxpr and its sub-jaxprs."""
    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is lax.dot_general_p:
                found.append(eqn.params["precision"])
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                        visit(getattr(sub, "jaxpr", sub))

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def model_logdensity(z):
    return ne.logdensity_from_model(model, key=jax.random.key(0)).logdensity_fn(z)


BORDERS = {
    "evaluate_energy": lambda x: ne.evaluate_energy(quadratic, x),
    "potential_fn": lambda x: ne.potential_fn(quadratic, 2.0)(x),
    "EnergyDistribution.log_prob": lambda x: ne.EnergyDistribution(quadratic, (DIM,)).log_prob(x),
    "energy_factor": lambda x: (
        numpyro.handlers.trace(
            numpyro.handlers.seed(lambda: ne.energy_factor("e", quadratic, x), 0)
        )
        .get_trace()["e"]["fn"]
        .log_prob(jnp.zeros(()))
    ),
    "logdensity_from_model": lambda x: model_logdensity({"x": x}),
}
HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


@pytest.mark.parametrize("border", sorted(BORDERS))
def test_reported_values_and_their_gradients_use_full_float32_matmuls(border):
    fn = BORDERS[border]
    forward, backward = dot_precisions(fn, X), dot_precisions(jax.grad(fn), X)
    assert len(forward) >= 2 and len(backward) >= 3  # d @ P @ d, and its transposes
    assert set(forward) | set(backward) == {HIGHEST}


def test_the_policy_does_not_leak_out_of_the_wrapped_function():
    wrapped = full_precision(quadratic)
    assert set(dot_precisions(lambda x: (wrapped(x), quadratic(x)), X)) == {HIGHEST, None}
    assert jax.config.jax_default_matmul_precision is None
    assert PRECISION == "highest"


@pytest.mark.parametrize("choice", ["tensorfloat32", "bfloat16", "default"])
def test_a_callers_explicit_precision_wins(choice):
    with jax.default_matmul_precision(choice):
        expected = set(dot_precisions(quadratic, X))
        assert set(dot_precisions(BORDERS["potential_fn"], X)) == expected != {HIGHEST}


def test_wrapping_twice_is_wrapping_once():
    once = full_precision(quadratic)
    assert full_precision(once) is once
    assert once.__name__ == "quadratic"
    np.testing.assert_array_equal(once(X), quadratic(X))


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


@pytest.mark.skipif(not _has_gpu(), reason="needs a GPU (NUMPYRO_EBM_TEST_PLATFORM=gpu)")
def test_gpu_potential_agrees_with_cpu_and_float64():
    # float64 truth; full float32 matmuls are accurate to a few ulps of the terms' magnitude,
    # TF32 (the GPU default) to about 1e-3 of it
    d = X.astype(np.float64) - MEAN
    truth = 0.5 * d @ PRECISION_MATRIX.astype(np.float64) @ d
    scale = 0.5 * np.abs(d) @ np.abs(PRECISION_MATRIX.astype(np.float64)) @ np.abs(d)
    potential = jax.jit(ne.potential_fn(quadratic))
    gpu = float(potential(jax.device_put(X, jax.devices("gpu")[0])))
    cpu = float(potential(jax.device_put(X, jax.devices("cpu")[0])))
    assert abs(gpu - truth) <= 1e-5 * scale
    assert abs(gpu - cpu) <= 1e-5 * scale
