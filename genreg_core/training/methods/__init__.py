"""Training methods and their registry: the one place where a ``TrainConfig`` becomes a method."""

from __future__ import annotations

from collections.abc import Callable

from genreg_core.config import TrainConfig
from genreg_core.training.methods.adarand import AdaRand
from genreg_core.training.methods.base import Method, MethodSetup
from genreg_core.training.methods.ce import CrossEntropy
from genreg_core.training.methods.gda import GenerativeAugmentation
from genreg_core.training.methods.gssl import GSSL
from genreg_core.training.methods.mgr import MGR
from genreg_core.training.methods.randreg import RandReg
from genreg_core.training.methods.semantic import SemanticPerturbation


def _adarand(config: TrainConfig) -> AdaRand:
    return AdaRand(config.randreg_weight, config.adarand_alpha, config.adarand_prior_lr)


def _mgr(base: Method, config: TrainConfig) -> MGR:
    return MGR(base, config.mgr_weight, config.mgr_finder_lr, config.mgr_meta_period, config.mgr_sampler_steps,
               config.mgr_backprop_steps, config.mgr_synthetic_batch, config.batch_size, config.mgr_pcr_reduction,
               config.mgr_finder_conditional, config.mgr_lookahead, config.mgr_meta_steps, config.mgr_compare_random,
               config.mgr_compile)



def _semantic(config: TrainConfig) -> SemanticPerturbation:
    return SemanticPerturbation(config.semantic_perturbation, config.semantic_norm, config.semantic_eps,
                                config.semantic_alpha, config.semantic_pgd_steps, config.semantic_ratio,
                                config.semantic_tau, config.semantic_sampler_steps, config.augment)


def _gssl(config: TrainConfig) -> GSSL:
    return GSSL(config.gssl_weight, config.gssl_sim_weight, config.gssl_latent_lr, config.gssl_bank_per_class,
                config.gssl_meta_period, config.gssl_sampler_steps, config.gssl_backprop_steps,
                config.gssl_synthetic_batch, config.batch_size)


METHODS: dict[str, Callable[[TrainConfig], Method]] = {
    "ce": lambda config: CrossEntropy(),
    "gda": lambda config: GenerativeAugmentation(config.gda_ratio, config.gda_pool_per_class,
                                                 config.gda_sampler_steps, config.augment, config.gda_pool_folder),
    "randreg": lambda config: RandReg(config.randreg_weight),
    "adarand": _adarand,
    "mgr": lambda config: _mgr(CrossEntropy(), config),
    "mgr+adarand": lambda config: _mgr(_adarand(config), config),
    "semantic": _semantic,
    "gssl": _gssl,
}


def make_method(name: str, config: TrainConfig) -> Method:
    """A fresh method called ``name`` with the hyper-parameters of ``config``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name](config)


__all__ = ["GSSL", "METHODS", "AdaRand", "CrossEntropy", "GenerativeAugmentation", "MGR", "Method", "MethodSetup",
           "RandReg", "SemanticPerturbation", "make_method"]
