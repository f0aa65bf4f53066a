"""What the digit examples share: tiling digits into one image, and naming the classes of
generated digits with a classifier, so that a figure of samples says how the model spreads its
mass over the ten digits (:func:`numpyro_ebm.metrics.class_weights`) beside the pictures.

The classifier is scikit-learn's multinomial logistic regression on the example's own training
split (its held-out accuracy is reported): a simple, well-calibrated labeller of 8x8 digits.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression

from numpyro_ebm.metrics import ClassWeights, class_weights

NUM_CLASSES = 10


def show_images(ax, images: np.ndarray, ncols: int, title: str, signed: bool = False) -> None:
    """Tile ``images`` (rows of 64 pixels in [0, 1], or signed weights with ``signed``) into one
    grid on ``ax``, 1 pixel apart."""
    nrows = -(-images.shape[0] // ncols)
    canvas = np.full((9 * nrows + 1, 9 * ncols + 1), np.nan)
    for i, image in enumerate(images):
        image = image / (np.abs(image).max() + 1e-12) if signed else np.clip(image, 0.0, 1.0)
        row, col = divmod(i, ncols)
        canvas[1 + 9 * row : 9 * row + 9, 1 + 9 * col : 9 * col + 9] = image.reshape(8, 8)
    cmap = plt.get_cmap("RdBu_r" if signed else "gray_r").with_extremes(bad="#d8e4f0")
    ax.imshow(canvas, cmap=cmap, vmin=-1.0 if signed else 0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


class DigitClasses:
    """A classifier of digits fitted on ``(train, train_labels)``; ``accuracy`` on ``(test,
    test_labels)``; :meth:`weights` measures generated digits against the training labels."""

    def __init__(self, train, train_labels, test, test_labels):
        self.reference = np.asarray(train_labels)
        self.model = LogisticRegression(max_iter=2000).fit(np.asarray(train), self.reference)
        self.accuracy = float(self.model.score(np.asarray(test), np.asarray(test_labels)))

    def weights(self, samples) -> ClassWeights:
        """Class weights of ``samples``, ``(chains, draws, 64)`` from Markov chains or ``(n, 64)``
        independent digits."""
        samples = np.asarray(samples)
        labels = self.model.predict(samples.reshape(-1, 64)).reshape(samples.shape[:-1])
        return class_weights(labels, self.reference, NUM_CLASSES)


def summary(weights: ClassWeights) -> dict:
    """``weights`` as JSON-ready numbers."""
    return {
        "frequencies": weights.frequencies.round(4).tolist(),
        "standard_error": weights.standard_error.round(4).tolist(),
        "data_frequencies": weights.reference.round(4).tolist(),
        "kl": weights.kl,
        "kl_standard_error": weights.kl_standard_error,
        "max_rhat": float(np.nanmax(weights.rhat)) if np.isfinite(weights.rhat).any() else None,
        "chains": weights.num_chains,
        "draws": weights.num_draws,
    }


def describe(weights: ClassWeights) -> str:
    """One line: KL with its standard error and the largest R-hat of the class indicators."""
    text = f"KL {weights.kl:.3f} +- {weights.kl_standard_error:.3f} nats from the data's classes"
    if np.isfinite(weights.rhat).any():
        text += f", R-hat of the class indicators <= {np.nanmax(weights.rhat):.3f}"
    return text


def plot_class_histogram(ax, rows: dict[str, ClassWeights]) -> None:
    """Grouped bars of the class frequencies of each of ``rows`` (with 2 standard errors), the
    data's first."""
    first = next(iter(rows.values()))
    bars = {"data": (first.reference, np.zeros(NUM_CLASSES))} | {
        label: (w.frequencies, 2 * w.standard_error) for label, w in rows.items()
    }
    width = 0.8 / len(bars)
    for i, (label, (height, error)) in enumerate(bars.items()):
        x = np.arange(NUM_CLASSES) + (i - (len(bars) - 1) / 2) * width
        ax.bar(x, height, width, yerr=error, label=label, capsize=1.5, error_kw={"lw": 0.6})
    ax.set(xticks=range(NUM_CLASSES), xlabel="class (logistic regression)", ylabel="share")
    ax.set_title("classes of the samples", fontsize=9)
    ax.legend(fontsize=7)
