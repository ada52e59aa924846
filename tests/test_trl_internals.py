"""The TRL internals the trainer relies on are all still there, and an upgrade that changes one fails naming it."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import trl.trainer.utils as trl_utils
from packaging.specifiers import SpecifierSet
from trl import DPOTrainer

from codelutra.training import trl_internals
from codelutra.training.trl_internals import TRLInternalChanged

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_installed_trl_has_every_internal_the_trainer_uses():
    trl_internals.check()


def test_the_trl_bound_is_the_tested_one_and_admits_the_installed_trl():
    bound = re.search(r'"trl([<>=!,.\d]+)"', PYPROJECT.read_text()).group(1)
    assert bound == trl_internals.TESTED_TRL
    assert version("trl") in SpecifierSet(bound)


@pytest.mark.parametrize(
    ("target", "name", "replacement", "internal"),
    [
        (trl_utils, "_use_triton", None, "trl.trainer.utils._use_triton"),
        (DPOTrainer, "compute_ref_log_probs", lambda self, model, batch, extra=None: None, "DPOTrainer.compute_ref_log_probs"),
        (DPOTrainer, "_compute_loss", lambda self, model, inputs, return_outputs: None, "DPOTrainer.precompute_ref_logps"),
    ],
)
def test_a_changed_internal_fails_loudly_naming_it(monkeypatch, target, name, replacement, internal):
    if replacement is None:
        monkeypatch.delattr(target, name)
    else:
        monkeypatch.setattr(target, name, replacement)
    with pytest.raises(TRLInternalChanged, match=re.escape(internal)):
        trl_internals.check()


def test_a_changed_collator_layout_fails_naming_it(monkeypatch):
    from trl.trainer import dpo_trainer

    original = dpo_trainer.DataCollatorForPreference.torch_call
    monkeypatch.setattr(dpo_trainer.DataCollatorForPreference, "torch_call", lambda self, ex: {**original(self, ex), "extra": 1})
    with pytest.raises(TRLInternalChanged, match="DataCollatorForPreference"):
        trl_internals.check()
