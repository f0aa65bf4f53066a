r"""On-device MCMC convergence diagnostics, numerically identical to ArviZ 0.23.

The ArviZ statistics (:func:`rhat`, the ESS, the MCSE and :func:`summary`) take real draws of
shape ``(chain, draw, *param_shape)`` and return an array of shape ``param_shape``
(:func:`summary` returns a dict of them). The functions are pure JAX
with no Python branching on values, so they run under :func:`jax.jit`, inside
:func:`jax.lax.scan` and on any device. Shapes are static, so the input checks (at least 2
chains and 4 draws) raise eagerly even under ``jit``.

The estimators reproduce ``arviz.rhat(method="rank")``, ``arviz.ess(method=...)``,
``arviz.mcse(method=...)`` and the matching columns of ``arviz.summary`` (Vehtari et al. 2021,
with Geyer's 1992 initial monotone sequence), including their conventions for edge cases:

* a parameter whose draws hold a ``NaN`` gets ``NaN`` (other parameters are unaffected);
* a constant parameter gets ``rhat = NaN`` (0/0), an ESS equal to the number of split draws
  ``chain * 2 * (draw // 2)``, ``mcse_mean = 0`` and ``mcse_sd = NaN``.

Computation happens in the input's floating dtype (integer and 16-bit inputs are promoted to
JAX's default float), so float64 results need ``jax.enable_x64``.

How it is fast
--------------
Parameters are processed one after the other (:func:`jax.lax.map`), so every buffer is the size
of one parameter's draws, and the rank statistics cost a single sort per parameter:

1. the exact pooled median and tail quantiles are *selected*, not sorted: a histogram of the
   draws finds the bins holding the wanted ranks, :func:`jax.lax.top_k` picks out the few draws
   in them and a sort of those finishes;
2. the split draws are sorted once by their folded value :math:`|\theta - \mathrm{median}|`,
   as single 64-bit integers packing a monotone key of the folded value, the side of the median
   and the draw's position (a sort of one integer operand is about six times faster than a
   key-value sort; on CPU it is NumPy's, see ``_sort_keys``). The order gives the folded
   ranks, and the bulk ranks too: it lists the draws below the median in decreasing order and
   the others in increasing order, so a running count of each side places every draw in the
   bulk order;
3. normal scores of integer ranks come from a table computed once per pooled size with SciPy's
   ``ndtri`` (which ArviZ calls); the bulk scores are put back in draw order with one scatter,
   the folded ones only ever need per-chain sums;
4. each ESS is one FFT (of ArviZ's length) of all chains, whose power spectra are averaged
   before the single inverse transform.

On CPU the sort is NumPy's, which picks its code by the CPU's features: on the AMD Zen 4
host measured (NumPy 2.4.6), its AVX-512 sort ran at a sixth of the speed of its AVX2 sort
(52 against 8.7 ms for 10^6 float64 draws, 2026-12-07), and R-hat with both ESS at 1000
chains x 1000 draws x 10 took 0.90 s against 0.51 s. Setting
``NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"`` before Python starts makes NumPy
take its AVX2 code there (for every NumPy kernel of that process, not only the sort).

Up to 8192 draws per parameter (4 chains x 2000) steps 1 and 2 give way to one sort of the
draws and the general path below: a program half the size, compiled in half the time, as fast
at 4 chains x 1000 draws in float64 (1.4x slower in float32 without 64-bit integers).

Ranks stay exact, ties included. A float64 folded value is quantized to the 43 bits left in
the packed key (float32 keeps all its bits), so two distinct values can share a key. Every run
of equal keys is found; up to eight isolated pairs are put in order from their exact values
(and share their mean rank when the values tie: the two middle draws are equidistant from the
median, so there is always one such pair); anything else (longer runs as with discrete
draws, infinities) takes a general path that ranks with a two-pass radix sort of full 64-bit
keys, several times slower. Without ``jax_enable_x64`` (no 64-bit integers) the sorts are
XLA's key-value sorts: correct, several times slower.

Each public function is compiled once per shape, dtype and set of statistics (``jax.jit``'s
own cache, no other state); under an outer ``jit`` or ``scan`` it is inlined. A function of
one statistic does that statistic's work only. Statistics computed together share their
work: :func:`summary` (all of them, or those named by ``stats=``) and
:func:`max_rhat_min_ess` (the mixing check of samplers and training: :math:`\hat R` and bulk
ESS from one sort per coordinate). ``rhat``, ``ess_bulk`` and ``ess_tail`` called one after
the other sort each parameter twice; ``summary(x, stats=("rhat", "ess_bulk", "ess_tail"))``
sorts it once.

Three more statistics, for what split-:math:`\hat R` and ESS do not see:

* :func:`ksd`, the kernel Stein discrepancy of draws against the energy's score (Gorham &
  Mackey 2017): how far the draws are from the target, not only from each other. It is blind
  to the weights of well-separated modes, so it goes next to an :math:`\hat R` or a mode-weight
  check, never alone.
* :func:`nested_rhat` with :func:`nested_rhat_threshold`, :math:`\hat R` over superchains of
  chains sharing a starting point (Margossian et al. 2024): the check for many short chains,
  down to one draw per chain.
* :func:`pareto_khat` with :func:`pareto_khat_threshold`, the Pareto :math:`\hat k` of
  importance log-weights as ``arviz.psislw`` fits it (Vehtari et al. 2024): whether an
  importance-sampling estimate (AIS, SMC, reweighting) can be trusted.
* :func:`spurious_basins`, gradient descent on an energy from noise: the share of descents
  that end at an energy typical of held-out data yet far from every training point, the
  spurious low-energy basins that contrastive training leaves behind.

The package holds these parts: ``_ranks`` (integer sort keys, order statistics, rank
normalization), ``_ess`` (split chains, autocovariances, ESS and :math:`\hat R` kernels),
``_summary`` (input checks, the loop over parameters, the ArviZ functions), ``_stein``
(:func:`ksd`), ``_nested`` (:func:`nested_rhat`), ``_pareto`` (:func:`pareto_khat`) and
``_basins`` (:func:`spurious_basins`).

References
----------
Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science*, 7(4), 473-483.

Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC. *Bayesian Analysis*, 16(2), 667-718.
"""

from numpyro_ebm.diagnostics._basins import BasinProbe, spurious_basins
from numpyro_ebm.diagnostics._nested import nested_rhat, nested_rhat_threshold
from numpyro_ebm.diagnostics._pareto import pareto_khat, pareto_khat_threshold
from numpyro_ebm.diagnostics._stein import ksd
from numpyro_ebm.diagnostics._summary import (
    coordinate_names,
    ess_bulk,
    ess_mean,
    ess_tail,
    max_rhat_min_ess,
    mcse_mean,
    mcse_sd,
    rhat,
    summary,
)

__all__ = [
    "BasinProbe",
    "coordinate_names",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "ksd",
    "max_rhat_min_ess",
    "mcse_mean",
    "mcse_sd",
    "nested_rhat",
    "nested_rhat_threshold",
    "pareto_khat",
    "pareto_khat_threshold",
    "rhat",
    "spurious_basins",
    "summary",
]
