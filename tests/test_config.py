"""Configs: per-method option groups, dotted overrides, and specs saved before the options were grouped."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from genreg_core.config import METHOD_OPTIONS, MGROptions, SemanticOptions, TrainConfig, config_from_dict, override
from genreg_core.training.methods import METHODS, make_method


def test_a_nested_config_round_trips_through_json():
    config = TrainConfig(method="mgr", mgr=MGROptions(weight=0.25, lookahead="adam"),
                         semantic=SemanticOptions(eps=0.3))
    back = config_from_dict(TrainConfig, json.loads(json.dumps(asdict(config))))
    assert back == config and isinstance(back.mgr, MGROptions)


def test_a_flat_config_saved_before_the_grouping_loads_with_its_values():
    legacy = {"method": "mgr", "mgr_weight": 0.5, "mgr_lookahead": "adam", "mgr_val_fraction": 0.3,
              "gda_ratio": 2.0, "semantic_eps": 0.1, "randreg_weight": 3.0, "adarand_alpha": 0.25,
              "gssl_bank_per_class": 7, "epochs": 4}
    config = config_from_dict(TrainConfig, legacy)
    assert (config.mgr.weight, config.mgr.lookahead, config.meta_val_fraction) == (0.5, "adam", 0.3)
    assert (config.gda.ratio, config.semantic.eps, config.randreg.weight) == (2.0, 0.1, 3.0)
    assert (config.adarand.alpha, config.gssl.bank_per_class, config.epochs) == (0.25, 7, 4)
    assert config.mgr.finder_lr == MGROptions().finder_lr  # unnamed fields keep their defaults


def test_dotted_override_sets_one_nested_field_and_rejects_unknown_paths():
    config = override(TrainConfig(), "mgr.weight", 0.1)
    assert config.mgr.weight == 0.1 and TrainConfig().mgr.weight == 1.0 and config.gda == TrainConfig().gda
    assert override(TrainConfig(), "epochs", 3).epochs == 3
    for bad in ("mgr.nope", "nope", "epochs.x"):
        with pytest.raises(ValueError, match="no config field"):
            override(TrainConfig(), bad, 1)


def test_every_option_group_is_a_train_config_field_and_reaches_its_method():
    names = {f.name for f in fields(TrainConfig)}
    assert set(METHOD_OPTIONS) <= names
    method = make_method("mgr+adarand", TrainConfig(mgr=MGROptions(weight=0.7), adarand=config_from_dict(
        METHOD_OPTIONS["adarand"], {"alpha": 0.1})))
    assert (method.weight, method.base.alpha, method.base.name) == (0.7, 0.1, "adarand")
    assert make_method("gda", override(TrainConfig(), "gda.ratio", 3.0)).ratio == 3.0


def test_the_registry_names_each_method_once_with_a_note():
    assert list(METHODS) == ["ce", "gda", "randreg", "adarand", "mgr", "mgr+adarand", "semantic", "gssl"]
    assert all(cls.name == name and cls.note for name, cls in METHODS.items())
    assert {n for n, c in METHODS.items() if c.needs_generator} == {"gda", "mgr", "mgr+adarand", "semantic", "gssl"}
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        make_method("sgd", TrainConfig())
