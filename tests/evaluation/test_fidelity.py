"""The shipped generator's samples look like their class to a classifier that knows nothing of genreg."""

from genreg_core.config import SamplerConfig
from genreg_core.evaluation.fidelity import class_fidelity
from genreg_core.lab import open_lab


def test_shipped_generator_class_fidelity_at_default_sampler():
    lab = open_lab()
    samples, labels = lab.sample(20, SamplerConfig(), seed=123)
    result = class_fidelity(*lab.train_images(), samples, labels, test=lab.test_images())
    assert result.reference_test_accuracy > 0.9
    assert result.overall >= 0.9, result
    assert min(result.per_class) >= 0.6, result.per_class
