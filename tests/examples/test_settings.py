"""examples.common.settings: ranges named with the setting, NaN anywhere refused, a run directory pinned to its settings."""

import math

import pytest
from omegaconf import OmegaConf

from examples.common.settings import SettingError, check_finite, flatten, pin_settings, require


def test_require_names_the_setting_the_range_and_the_value():
    require("a", 3, low=1)
    require("a", None, low=1, allow_none=True)
    require("f", 0.5, kind=float, low=0.0, high=1.0)
    with pytest.raises(SettingError, match=r"^a must be an int >= 1, got 0$"):
        require("a", 0, low=1)
    with pytest.raises(SettingError, match=r"^a must be an int >= 1, got True$"):
        require("a", True, low=1)  # a bool is not a count
    with pytest.raises(SettingError, match=r"^a must be an int >= 1 and <= 4, got 5$"):
        require("a", 5, low=1, high=4)
    with pytest.raises(SettingError, match=r"^f must be a finite number >= 0.0 and <= 1.0, got nan$"):
        require("f", math.nan, kind=float, low=0.0, high=1.0)
    with pytest.raises(SettingError, match=r"^f must be a finite number, got '3'$"):
        require("f", "3", kind=float)


def test_check_finite_walks_nested_configs():
    cfg = OmegaConf.create({"a": {"b": [1.0, {"c": 2.0}]}, "d": "x", "e": None})
    assert flatten(cfg) == {"a.b.0": 1.0, "a.b.1.c": 2.0, "d": "x", "e": None}
    check_finite(cfg)
    cfg.a.b[1].c = float("inf")
    with pytest.raises(SettingError, match=r"^a.b.1.c must be a finite number, got inf$"):
        check_finite(cfg)


def test_pin_settings_refuses_a_resume_with_other_settings(tmp_path):
    cfg = OmegaConf.create({"seed": 0, "run": {"iterations": 5, "clips": 2}, "dist": {"timeout_s": 300}})
    pin_settings(tmp_path, cfg, free=("run.iterations", "dist"))
    assert (tmp_path / "settings.json").is_file()
    cfg.run.iterations, cfg.dist.timeout_s = 9, 10  # free: a longer run, another timeout
    pin_settings(tmp_path, cfg, free=("run.iterations", "dist"))
    cfg.seed, cfg.run.clips = 1, 3
    with pytest.raises(SettingError, match=r"run.clips: 2 in the run, 3 now; seed: 0 in the run, 1 now\). Resuming would mix two runs"):
        pin_settings(tmp_path, cfg, free=("run.iterations", "dist"))
