"""Settings: documented defaults and overrides from spec.algorithm.settings."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from ma2ml.learner import Settings, SettingsError
from ma2ml.settings import __file__ as settings_file


def test_every_setting_has_a_one_line_docstring() -> None:
    source = Path(settings_file).read_text()
    for field in dataclasses.fields(Settings):
        assert f"    {field.name}: " in source
        after = source.split(f"    {field.name}: ", 1)[1].splitlines()[1].strip()
        assert after.startswith('"""') and after.endswith('"""'), field.name
    assert inspect.getdoc(Settings)


def test_overrides_are_coerced() -> None:
    settings = Settings.from_overrides({"alpha": 1, "critic_steps": 8.0, "credit": "agent"})
    assert settings.alpha == 1.0 and isinstance(settings.alpha, float)
    assert settings.critic_steps == 8 and isinstance(settings.critic_steps, int)
    assert settings.credit == "agent"
    assert Settings.from_overrides(None) == Settings()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"alpah": 0.1}, r"spec\.algorithm\.settings\.alpah: unknown setting \(known: .*alpha"),
    ({"alpha": "big"}, r"spec\.algorithm\.settings\.alpha: expected a number, got 'big'"),
    ({"critic_steps": 2.5}, r"spec\.algorithm\.settings\.critic_steps: expected an integer"),
    ({"critic_steps": True}, r"spec\.algorithm\.settings\.critic_steps: expected an integer"),
    ({"credit": "both"}, r"spec\.algorithm\.settings\.credit: expected one of decision, agent"),
    ({"tau": 1.5}, r"spec\.algorithm\.settings\.tau: must be in \[0, 1\], got 1\.5"),
    ({"alpha": 0}, r"spec\.algorithm\.settings\.alpha: must be > 0"),
    ({"exploration": 1.2}, r"spec\.algorithm\.settings\.exploration: must be in \[0, 1\]"),
    ({"proposal_candidates": 0},
     r"spec\.algorithm\.settings\.proposal_candidates: must be >= 1, got 0"),
    ({"reward_transform": "log"},
     r"spec\.algorithm\.settings\.reward_transform: expected one of rank, zscore"),
    ({"bayes_pairs": "some"},
     r"spec\.algorithm\.settings\.bayes_pairs: expected one of all, cross-agent"),
    ({"bayes_reward_transform": "log"},
     r"spec\.algorithm\.settings\.bayes_reward_transform: expected one of rank, zscore, "
     r"upper-linear"),
    ({"bayes_exploration": 1.5},
     r"spec\.algorithm\.settings\.bayes_exploration: must be in \[0, 1\]"),
    ({"auto_bayes_trials": 10**9},
     r"spec\.algorithm\.settings\.auto_bayes_trials: must be in \[0, 10000000\]"),
])
def test_bad_overrides_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_overrides(overrides)
