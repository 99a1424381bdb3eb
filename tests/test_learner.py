"""Tests of spikebridge.learner."""

from spikebridge import create_learner
from spikebridge.colanet import CoLaNETConfig
from spikebridge.rules import RSTDPConfig


# ------------------------------------------------------------------ configs are copied, never mutated
def test_create_learner_copies_the_config():
    cfg = CoLaNETConfig(seed=5, microcolumns=3)
    learner = create_learner("colanet", 64, 10, cfg)
    assert learner.config.seed == 5  # the config's seed, not 0
    other = create_learner("colanet", 64, 10, cfg, seed=7, steps=8)
    assert (other.config.seed, other.config.steps) == (7, 8)
    assert (cfg.seed, cfg.steps) == (5, 32) and other.config is not cfg
    rule_cfg = RSTDPConfig(eta=0.5)
    assert create_learner("rstdp", 64, 10, rule_cfg, seed=3).config.seed == 3 and rule_cfg.seed == 0
