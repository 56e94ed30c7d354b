"""Configuration: presets, validation messages, overrides, run-directory config guard."""

import pytest

from glasscam_mpi.config import PRESETS, ConfigError, load_config, parse_override
from glasscam_mpi.rundir import RunDir


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_roundtrip(name, tmp_path):
    cfg = load_config(preset=name)
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path=path) == cfg


def test_paper_presets_are_the_paper():
    for name, system in (("paper-kam", "KAM"), ("paper-abm", "ABM")):
        cfg = load_config(preset=name)
        assert cfg.system.name == system and cfg.system.n_particles == 2000
        assert cfg.prepare.n_runs == 5000 and cfg.prepare.cooling_rate == 8.33e-5
        assert cfg.split_counts() == (4000, 400, 600)
    assert load_config(preset="paper-kam").T_liquid == 0.8
    assert load_config(preset="paper-abm").T_liquid == 2.0
    assert load_config(preset="ka3d").sys.dim == 3


@pytest.mark.parametrize("toml, needle", [
    ("[prepare]\nn_runs = -3\n", "[prepare].n_runs = -3: allowed: an integer >= 3"),
    ("[prepare]\nn_runs = 2.5\n", "[prepare].n_runs = 2.5: expected an integer"),
    ("[prepare]\ntimestep = 0\n", "[prepare].timestep = 0: allowed: a number > 0.0 and <= 0.05"),
    ("[prepare]\ncooling_rate = nan\n", "must be finite"),
    ("[system]\nname = \"LJ\"\n", "allowed: one of 'KAM', 'ABM', 'ABM-code', 'KA3D'"),
    ("[prepare]\nn_run = 10\n", "unknown key [prepare].n_run; allowed keys: "),
    ("[cooling]\nrate = 1\n", "unknown section [cooling]; allowed: [run], [system], [prepare]"),
    ("[prepare]\ntrain_fraction = 0.9\nvalidation_fraction = 0.1\n", "must be < 1"),
    ("[prepare]\nT_liquid = 5.0\n", "T_glass < T_liquid < T_high"),
    ("[system]\nn_particles = 20\n", "use n_particles >= 31 for KAM"),
    ("[prepare]\nn_runs = 3\ntrain_fraction = 0.1\n", "need at least 1 train and 1 test"),
    ("prepare = 3\n", "'prepare' must be a table"),
    ("[prepare\n", "not valid TOML"),
    ("[train]\ngrid_on_the_fly = \"maybe\"\n",
     "[train].grid_on_the_fly = 'maybe': allowed: true, false, or one of 'auto'"),
    ("[train]\ngrid_on_the_fly = 1\n", "[train].grid_on_the_fly = 1: allowed: true, false"),
])
def test_bad_config_is_refused_with_field_value_and_allowed(tmp_path, toml, needle):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path=path)
    assert needle in str(err.value)


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; allowed: demo, study, paper-kam, paper-abm, ka3d"):
        load_config(preset="fast")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path="/nonexistent/x.toml")


def test_overrides_and_preset_inheritance(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "paper-abm"\n[prepare]\nn_runs = 40\n')
    cfg = load_config(path=path, overrides=["system.n_particles=500", "run.seed=11"])
    assert (cfg.system.name, cfg.prepare.n_runs, cfg.system.n_particles, cfg.run.seed) == \
        ("ABM", 40, 500, 11)
    assert cfg.prepare.cooling_rate == 8.33e-5  # inherited from the preset
    assert parse_override("prepare.cooling_rate=1e-3") == {"prepare": {"cooling_rate": 1e-3}}
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        parse_override("n_runs=3")


def test_run_dir_keeps_its_config(tmp_path):
    rd = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="no config.toml yet"):
        rd.resolve_config(None)
    demo = load_config(preset="demo")
    assert rd.resolve_config(demo) == demo
    assert rd.resolve_config(None) == demo  # a resume needs no config again
    other = load_config(preset="demo", overrides=["prepare.n_runs=99"])
    with pytest.raises(ConfigError, match=r"\[prepare\].n_runs: 120 -> 99"):
        rd.resolve_config(other)


@pytest.mark.parametrize("value, want", [("true", True), ("false", False), ('"auto"', "auto")])
def test_grid_on_the_fly_takes_a_boolean_or_auto(tmp_path, value, want):
    path = tmp_path / "c.toml"
    path.write_text(f"[train]\ngrid_on_the_fly = {value}\n")
    assert load_config(path=path).train.grid_on_the_fly == want
    assert load_config(overrides=[f"train.grid_on_the_fly={value}"]).train.grid_on_the_fly == want
