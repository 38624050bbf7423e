"""Training methods and their registry: the one place where a method's name, note and needs are looked up, and
where a ``TrainConfig`` becomes a method (``Method.from_config``)."""

from __future__ import annotations

from genreg_core.config import TrainConfig
from genreg_core.training.methods.adarand import AdaRand
from genreg_core.training.methods.base import Method, MethodSetup
from genreg_core.training.methods.ce import CrossEntropy
from genreg_core.training.methods.gda import GenerativeAugmentation
from genreg_core.training.methods.gssl import GSSL
from genreg_core.training.methods.mgr import MGR, MGRAdaRand
from genreg_core.training.methods.randreg import RandReg
from genreg_core.training.methods.semantic import SemanticPerturbation

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    CrossEntropy, GenerativeAugmentation, RandReg, AdaRand, MGR, MGRAdaRand, SemanticPerturbation, GSSL)}
GENERATOR_METHODS = tuple(name for name, cls in METHODS.items() if cls.needs_generator)  # use a diffusion model


def method_class(name: str) -> type[Method]:
    """The registered method called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]


def make_method(name: str, config: TrainConfig) -> Method:
    """A fresh method called ``name`` with the options of ``config``."""
    return method_class(name).from_config(config)


__all__ = ["GENERATOR_METHODS", "GSSL", "METHODS", "MGR", "AdaRand", "CrossEntropy", "GenerativeAugmentation",
           "MGRAdaRand", "Method", "MethodSetup", "RandReg", "SemanticPerturbation", "make_method", "method_class"]
