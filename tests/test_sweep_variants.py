"""``glasscam sweep``'s variants file without MPI: what each sub-run's configuration is, and
a clear ConfigError (the variant, the field, the value, what is allowed) for a bad one."""

import pytest

from conftest import TINY_TOML, TINY_TRAIN_TOML
from glasscam_mpi.config import ConfigError, load_config
from glasscam_mpi.sweep import link_parent, load_variants


@pytest.fixture
def parent_cfg(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TINY_TOML + TINY_TRAIN_TOML)
    return load_config(path=path)


def _variants(tmp_path, text):
    path = tmp_path / "v.toml"
    path.write_text(text)
    return path


def test_each_seed_is_the_parent_config_with_the_overrides(tmp_path, parent_cfg):
    path = _variants(tmp_path, """
seeds = 2
[variants.base]
[variants.fine]
gradcam.layer = 0
[variants.fine.train]           # a table per section works too
strides = [1, 1, 2]
channels = [2, 4, 4]
epochs = 5
augment = false
train_runs = 2
seed = 10
""")
    variants, seeds = load_variants(path, parent_cfg)
    assert seeds == 2 and [v.name for v in variants] == ["base", "fine"]
    base, fine = variants
    for s, cfg in enumerate(base.configs):
        assert cfg.train.seed == s and cfg.train.backend == "single" and cfg.train.ensemble == 1
        assert (cfg.run, cfg.system, cfg.prepare, cfg.propensity, cfg.analyze) == \
            (parent_cfg.run, parent_cfg.system, parent_cfg.prepare, parent_cfg.propensity,
             parent_cfg.analyze)
        assert cfg.train.strides == parent_cfg.train.strides
    t = fine.configs[1].train
    assert (t.strides, t.channels, t.epochs, t.augment, t.train_runs, t.seed) == \
        ((1, 1, 2), (2, 4, 4), 5, False, 2, 11)      # the variant's seed is network 10 + s
    assert fine.configs[0].gradcam.layer == 0
    assert load_variants(path, parent_cfg, seeds=4)[1] == 4  # --seeds wins over the file


@pytest.mark.parametrize("text, expected", [
    ("[variants.bad]\ntrain.strides = [1, 2]",
     ["variant 'bad'", "[train].strides = [1, 2]", "give 3 values"]),
    ("[variants.bad]\ntrain.kernels = [3, 4, 3]",
     ["variant 'bad'", "[train].kernels = [3, 4, 3]", "must be odd"]),
    ("[variants.bad]\ngradcam.layer = 5",
     ["variant 'bad'", "[gradcam].layer = 5", "allowed: an integer >= -3 and <= 2"]),
    ("[variants.bad]\ntrain.chanels = [4, 4, 4]",
     ["variant 'bad'", "unknown key [train].chanels = [4, 4, 4]", "allowed keys:", "channels"]),
    ("[variants.bad]\ntrain.strides = [4, 4, 4]",
     ["variant 'bad'", "[train].n_grid = 16", "divisible by the total stride 64"]),
    ("[variants.ok]\n[variants.bad]\nprepare.n_runs = 3",
     ["variant 'bad'", "section [prepare] cannot vary", "allowed: [train], [gradcam]"]),
    ("[variants.bad]\ntrain.backend = \"ddp\"",
     ["variant 'bad'", "[train].backend = 'ddp' cannot be set", "single"]),
    ("[variants.bad]\ntrain.ensemble = 3", ["[train].ensemble = 3 cannot be set", "--seeds"]),
    ("[variants.bad]\ngradcam.model = \"x.pt\"", ["[gradcam].model = 'x.pt' cannot be set"]),
    ("[variants.bad]\ntrain.seed = -1", ["variant 'bad'", "[train].seed = -1",
                                         "allowed: an integer >= 0"]),
    ("[variants.\"a/b\"]", ["variant name 'a/b'", "allowed: letters, digits"]),
    ("[variants.ensemble]", ["variant name 'ensemble'"]),
    ("seeds = 0\n[variants.a]", ["seeds = 0", "allowed: an integer >= 1"]),
    ("[variant.a]", ["unknown top-level key(s) variant", "[variants.NAME]"]),
    ("seeds = 2", ["no variants"]),
    ("[variants.bad]\ntrain = 3", ["variant 'bad'", "'train' must be a table"]),
    ("[variants.bad]\ntrain.liquid_snapshot = 0.6",
     ["variant 'bad'", "[train].liquid_snapshot = 0.6", "[prepare].extra_snapshots = []"]),
])
def test_a_bad_variant_is_refused_naming_variant_field_value_and_what_is_allowed(
        tmp_path, parent_cfg, text, expected):
    with pytest.raises(ConfigError) as err:
        load_variants(_variants(tmp_path, text), parent_cfg)
    for part in expected:
        assert part in str(err.value), (part, str(err.value))


def test_a_missing_or_broken_variants_file_is_a_config_error(tmp_path, parent_cfg):
    with pytest.raises(ConfigError, match="does not exist"):
        load_variants(tmp_path / "none.toml", parent_cfg)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_variants(_variants(tmp_path, "[variants.a\n"), parent_cfg)


def test_a_sub_run_links_the_parent_files_and_refuses_a_foreign_one(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    for name in ("prepare.h5", "indicators.h5", "propensity.h5"):
        (parent / name).write_bytes(name.encode())
    sub = parent / "sweep" / "v" / "seed-0"
    link_parent(parent, sub)
    link_parent(parent, sub)  # again: the links are there already
    for name in ("prepare.h5", "indicators.h5", "propensity.h5"):
        assert (sub / name).is_symlink()
        assert (sub / name).resolve() == (parent / name).resolve()
    (sub / "indicators.h5").unlink()
    (sub / "indicators.h5").write_bytes(b"a copy")
    with pytest.raises(ConfigError, match="is not a link to"):
        link_parent(parent, sub)


def test_the_example_variants_file_is_valid_for_the_study_preset():
    from conftest import ROOT

    cfg = load_config(preset="study", overrides=["prepare.n_runs=200"])
    variants, seeds = load_variants(ROOT / "hpc" / "sweep-variants.example.toml", cfg)
    assert seeds == 3 and len(variants) >= 6
    assert {v.configs[0].train.strides for v in variants} >= {(2, 2, 2), (1, 1, 2)}
    assert {v.configs[0].gradcam.layer for v in variants} >= {-1, 0, 1}
    # its header's cost: 4 [train] settings x 3 seeds trained, the layer variants share them
    from glasscam_mpi.sweep import shared_training

    jobs = [(v, s) for v in variants for s in range(seeds)]
    assert len(jobs) - len(shared_training(jobs)) == 12


def test_the_ten_seed_example_is_valid_for_the_n2000_study():
    """hpc/sweep-seeds10.example.toml, on the README's N = 2000 study config: ten seeds of
    the default CNN, and the same trained on 90 of the 160 training runs (one training
    per sub-run: nothing shared between the two variants)."""
    from conftest import ROOT

    from glasscam_mpi.sweep import shared_training

    cfg = load_config(path=ROOT / "hpc" / "study-n2000.toml")
    assert cfg.propensity.n_configs == 4 and cfg.split_counts()[0] == 160
    variants, seeds = load_variants(ROOT / "hpc" / "sweep-seeds10.example.toml", cfg)
    assert seeds == 10 and [v.name for v in variants] == ["s222", "s222-r90"]
    for v in variants:
        assert [c.train.seed for c in v.configs] == list(range(10))
        assert {c.train.strides for c in v.configs} == {(2, 2, 2)}
    assert variants[1].configs[0].train.train_runs == 90 < cfg.split_counts()[0]
    jobs = [(v, s) for v in variants for s in range(seeds)]
    assert shared_training(jobs) == {}


def test_an_ensemble_made_from_another_number_of_seeds_is_redone(tmp_path):
    """A sweep rerun with more --seeds keeps its seed sub-runs but must not report the old
    ensemble (of fewer members) under the new seeds: it is stale, and the sweep redoes it."""
    from glasscam_mpi.sweep import _ensemble_config, _stale_ensemble

    cfg = load_config(preset="demo")
    path = tmp_path / "v.toml"
    path.write_text("[variants.a]\ntrain.epochs = 2\n")
    two, _ = load_variants(path, cfg, 2)
    three, _ = load_variants(path, cfg, 3)
    root = tmp_path / "sweep"
    assert not _stale_ensemble(two[0], root)               # none made yet: simply to do
    ens = two[0].ensemble_dir(root)
    ens.mkdir(parents=True)
    (ens / "config.toml").write_text(_ensemble_config(two[0]).to_toml())
    assert _ensemble_config(two[0]).train.ensemble == 2
    assert not _stale_ensemble(two[0], root)
    assert _stale_ensemble(three[0], root)
