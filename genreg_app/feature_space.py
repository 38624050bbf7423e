"""The Feature space page's computation, shared with Home, which computes the page's first view ahead of time."""

from __future__ import annotations

import json
from dataclasses import asdict

from genreg_app.progress import cached_with_progress, prefetch
from genreg_app.state import lab_key
from genreg_core.analysis.feature_space import FeatureSpaceConfig, FeatureSpaceResult, compute_feature_space
from genreg_core.lab import Lab

# images × DDIM steps × pixels worth computing before it is asked for: the embedded default's first view is
# 1.3 M (10 classes × 20 × 25 steps × 16², about 3 s on 2 CPU cores); a user's larger data is left alone on the CPU
PREFETCH_BUDGET = 4_000_000


def first_view_config(lab: Lab) -> FeatureSpaceConfig:
    """The settings the Feature space page computes before the user presses Compute."""
    return FeatureSpaceConfig(per_class=20, t=lab.generator.num_train_timesteps // 2)


def result_key(lab: Lab, config: FeatureSpaceConfig) -> tuple[str, str]:
    """The cache key of a feature-space result: the lab and the settings."""
    return lab_key(lab), json.dumps(asdict(config), sort_keys=True)


def feature_space_result(lab: Lab, config: FeatureSpaceConfig) -> FeatureSpaceResult:
    """The cached result, computed with a progress bar on a miss (``ValueError`` for bad settings)."""
    return cached_with_progress("feature_space", result_key(lab, config),
                                lambda progress: compute_feature_space(lab, config, progress),
                                "Sampling and embedding…")


def prefetch_first_view(lab: Lab) -> bool:
    """Start computing the Feature space page's first view in the background when it is cheap (or on a GPU), so
    that page opens at once; returns whether a computation started."""
    config = first_view_config(lab)
    size = lab.dataset.image_size ** 2 * lab.n_classes * config.per_class * config.sampler.n_steps
    if lab.device.type != "cuda" and size > PREFETCH_BUDGET:
        return False
    return prefetch("feature_space", result_key(lab, config),
                    lambda progress: compute_feature_space(lab, config, progress))
