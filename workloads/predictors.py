"""Output-length predictors: what the scheduler believes a request will generate.

    oracle        predicted = true output length
    noisy:SIGMA   predicted = round(true * exp(N(0, SIGMA^2))): multiplicative
                  log-normal error, median-unbiased (the median ratio
                  predicted/true is 1; the spread of log(ratio) is SIGMA)
    confusion:P   predicted = true length, and the workload carries
                  ``confusion_p = P``: the engine swaps a request's bin with each
                  neighbouring bin with probability P (Paper 1, Fig. 8)

Predictions depend only on the true output length and the noise stream,
never on the prompt. They are at least 1 (a kept failed trace row, with a true
output of 0, is predicted as 1) and at most PREDICTED_MAX.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic import spec_number, split_spec
from .workload import WorkloadError

PREDICTOR_FORMS = "oracle, noisy:SIGMA (0 <= SIGMA <= 3), confusion:P (0 <= P <= 0.5)"
MAX_SIGMA = 3.0
MAX_CONFUSION = 0.5
PREDICTED_MAX = 2**31 - 1


@dataclass(frozen=True)
class PredictorSpec:
    """A parsed predictor spec; ``str()`` gives its canonical text."""

    kind: str
    param: float = 0.0

    def __str__(self) -> str:
        if self.kind == "oracle":
            return "oracle"
        p = self.param
        return f"{self.kind}:{int(p) if p.is_integer() else repr(p)}"

    @property
    def random(self) -> bool:
        """Whether the prediction draws from the predictor stream."""
        return self.kind == "noisy" and self.param > 0


def parse_predictor(text: object, field: str = "predictor") -> PredictorSpec:
    """Parse ``oracle``, ``noisy:SIGMA`` or ``confusion:P``."""
    kind, args = split_spec(text, field, PREDICTOR_FORMS)
    arity = {"oracle": 0, "noisy": 1, "confusion": 1}
    if kind not in arity or len(args) != arity[kind]:
        raise WorkloadError(f"{field}: malformed predictor spec {text!r} (accepted forms: {PREDICTOR_FORMS})")
    if kind == "oracle":
        return PredictorSpec("oracle")
    value = spec_number(args[0], field, str(text), PREDICTOR_FORMS)
    limit = MAX_SIGMA if kind == "noisy" else MAX_CONFUSION
    if not 0 <= value <= limit:
        name = "SIGMA" if kind == "noisy" else "P"
        raise WorkloadError(f"{field}: {name} must be between 0 and {limit:g}, got {value:g} in spec {text!r}")
    return PredictorSpec(kind, float(value))


def predict(spec: PredictorSpec, output: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(predicted lengths, confusion_p) for true ``output`` lengths."""
    true = np.asarray(output, dtype=np.int64)
    if spec.kind == "noisy":
        noise = np.exp(rng.normal(0.0, spec.param, len(true)))
        predicted = np.rint(true * noise)
    else:
        predicted = true
    predicted = np.clip(predicted, 1, PREDICTED_MAX).astype(np.int64)
    return predicted, (spec.param if spec.kind == "confusion" else 0.0)
