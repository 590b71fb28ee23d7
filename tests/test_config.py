import pytest

from twotower.config import Config, load_config
from twotower.errors import InvalidInput


def test_defaults_match_seed_keys():
    cfg = load_config()
    assert cfg.artifacts.max_tag_vocab == 512 and cfg.artifacts.min_tag_freq == 3
    assert cfg.artifacts.max_actress_vocab == 256 and cfg.artifacts.min_actress_freq == 2
    assert cfg.training.epochs == 25 and cfg.training.batch_size == 256
    assert cfg.training.negative_sampling_ratio == 3 and cfg.model.embedding_dim == 256


def test_file_env_and_override_layers(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("training:\n  epochs: 7\n  lr: 0.01\n")
    monkeypatch.setenv("TWOTOWER__TRAINING__EPOCHS", "9")
    cfg = load_config(f, ["model.embedding_dim=32"])
    assert cfg.training.epochs == 9  # env beats file
    assert cfg.training.lr == 0.01
    assert cfg.model.embedding_dim == 32
    cfg2 = load_config(f, ["training.epochs=3"])
    assert cfg2.training.epochs == 3  # flag beats env


@pytest.mark.parametrize("override,msg", [
    ("training.nope=1", "unknown config key"),
    ("training.epochs=abc", "expected int"),
    ("training.loss=hinge", "training.loss"),
    ("training.epochs=-1", ">= 0"),
    ("serving.mute_weight=2", "between 0 and 1"),
    ("serving.onboarding_fade_likes=0", "must be > 0"),
    ("serving.onboarding_fade_likes=500", "<= 200"),
])
def test_bad_config_is_a_clear_error(override, msg):
    with pytest.raises(InvalidInput, match=msg):
        load_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_digest_changes_with_config():
    a, b = Config(), Config()
    b.training.epochs = 3
    assert a.digest() != b.digest()
