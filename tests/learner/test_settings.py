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


@pytest.mark.parametrize(("algorithm", "overrides", "message"), [
    ("ma2ml", {"critic_model": "mlp", "bayes_window": 256},
     r"settings\.bayes_window: applies to critic_model pairwise-bayes \(or auto\), not mlp$"),
    ("ma2ml-no-credit", {"critic_model": "pairwise-bayes", "exploration": 0.3},
     r"settings\.exploration: applies to critic_model mlp \(or auto\), not pairwise-bayes; "
     r"pairwise-bayes reads bayes_exploration$"),
    ("ma2ml", {"critic_model": "pairwise-bayes", "critic_steps": 4},
     r"settings\.critic_steps: applies to critic_model mlp \(or auto\), not pairwise-bayes$"),
    ("ma2ml", {"critic_model": "mlp", "auto_bayes_trials": 50},
     r"settings\.auto_bayes_trials: applies to critic_model auto only, not mlp$"),
    ("tpe", {"critic_steps": 4},
     r"settings\.critic_steps: does not apply to algorithm tpe \(it applies to ma2ml, "
     r"ma2ml-no-credit, ma2ml-on-policy\)$"),
    ("random", {"alpha": 1.0}, r"settings\.alpha: does not apply to algorithm random"),
    ("random", {"critic_model": "mlp"},
     r"settings\.critic_model: does not apply to algorithm random"),
    ("ma2ml", {"tpe_window": 100},
     r"settings\.tpe_window: does not apply to algorithm ma2ml \(it applies to tpe\)$"),
    ("independent", {"tau": 0.5}, r"settings\.tau: does not apply to algorithm independent"),
    ("ma2ml-on-policy", {"batch_size": 32},
     r"settings\.batch_size: does not apply to algorithm ma2ml-on-policy"),
    ("ma2ml-no-credit", {"mc_samples": 4},
     r"settings\.mc_samples: does not apply to algorithm ma2ml-no-credit"),
])
def test_a_setting_the_algorithm_or_critic_never_reads_is_refused(
        algorithm: str, overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_overrides(overrides, algorithm)
    assert caught.value.key == list(overrides)[-1]
    Settings.from_overrides(overrides)  # without an algorithm, only the settings' own checks


@pytest.mark.parametrize(("algorithm", "overrides"), [
    # ``auto`` decides the critic from maxTrials, which may be edited while the search
    # runs: either critic's settings may come to apply.
    ("ma2ml", {"bayes_window": 256, "critic_steps": 4, "exploration": 0.2,
               "bayes_exploration": 0.3, "auto_bayes_trials": 50}),
    ("ma2ml", {"critic_model": "auto", "gibbs_sweeps": 3, "proposal_optimism": 1.0}),
    ("ma2ml", {"critic_model": "pairwise-bayes", "bayes_pairs": "cross-agent", "alpha": 0.5}),
    ("ma2ml-on-policy", {"critic_model": "mlp", "critic_steps": 4, "fidelity_input": False}),
    ("ma2ml-lite", {"alpha": 0.5, "tau": 0.1, "exploration": 0.2, "reward_transform": "zscore"}),
    ("tpe", {"tpe_window": 100, "failed_reward": -1.0, "dedupe_tries": 0}),
    ("random", {"dedupe_tries": 0}),
])
def test_settings_the_algorithm_reads_are_accepted(algorithm: str, overrides: dict) -> None:
    Settings.from_overrides(overrides, algorithm)


def test_every_setting_applies_to_some_algorithm_and_every_algorithm_is_listed() -> None:
    from ma2ml.learner.critics import CRITICS
    from ma2ml.settings import ALGORITHM_SETTINGS, CRITIC_MODELS, CRITIC_SETTINGS
    from ma2ml.spec import AlgorithmName

    assert set(ALGORITHM_SETTINGS) == {name.value for name in AlgorithmName}
    assert set().union(*ALGORITHM_SETTINGS.values()) == {f.name for f in dataclasses.fields(
        Settings)}
    assert set(CRITICS) == set(CRITIC_SETTINGS) == set(CRITIC_MODELS) - {"auto"}
