"""The ``model.*`` keys: a model's constructor arguments, whose defaults live in its signature only.

A preset in ``configs/model/`` names its class (``_target_``) and sets only the arguments it
changes. The others come from the constructor's signature, twice:

- while Hydra composes: each preset's defaults list starts with ``/model_arguments/<Class>``,
  a node of every argument and its default that ``register_model_arguments`` stores, so that
  ``model.KEY=VALUE`` overrides any argument and ``.hydra/config.yaml`` lists them all;
- when the train config is checked (``with_constructor_defaults``), for a model config that
  lacks some (a preset without that defaults entry), so that ``--help`` lists every argument
  and a checkpoint's ``config["model"]`` records every value the model was built with.

Reading a signature imports the model's module, and so torch: the nodes are stored only
where a train config is composed.
"""

from __future__ import annotations

import inspect

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

# Set from the data by the trainer, never by a preset.
FROM_DATA = ("src_vocab_size", "tgt_vocab_size", "shared_vocab")

GROUP = "model_arguments"  # the ConfigStore group of the nodes


def constructor_defaults(target: str) -> dict | None:
    """Every argument of the class ``target`` (a dotted path) that a preset may set, with its
    default, in the signature's order (``FROM_DATA`` left out); None when it cannot be imported."""
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - the model check then reports the bad _target_
        return None
    return {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if name not in FROM_DATA and p.default is not inspect.Parameter.empty
    }


def with_constructor_defaults(model_cfg: DictConfig) -> DictConfig:
    """``model_cfg`` with the constructor's default for each argument it does not set:
    ``_target_`` first, then the arguments in the signature's order, then any other key
    (which the constructor refuses)."""
    target = model_cfg.get("_target_")
    defaults = constructor_defaults(target) if isinstance(target, str) else None
    if defaults is None or set(defaults) <= set(model_cfg):
        return model_cfg
    filled = {"_target_": target, **defaults}
    filled.update(OmegaConf.to_container(model_cfg))
    return OmegaConf.create(filled)


def register_model_arguments(config_dir) -> None:
    """Store, for the class of each preset in ``config_dir/model``, the node
    ``model_arguments/<Class>``: its ``_target_`` and every argument with its default."""
    store = ConfigStore.instance()
    for path in sorted((config_dir / "model").glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        defaults = constructor_defaults(target) if isinstance(target, str) else None
        if defaults is not None:
            name = target.rpartition(".")[2]
            store.store(group=GROUP, name=name, node={"_target_": target, **defaults})
