"""Property tests (hypothesis) of the metrics and of the config loader.

Metrics: EER and minDCF lie in [0, 1], do not change under strictly increasing transforms of the scores,
and are symmetric under swapping the labels while negating the scores. Config: any unknown key is
rejected, and any valid override round-trips through the loader, ``to_dict`` and the saved YAML.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ssps.config import Config, ConfigError, config_from_dict, dump_config, load_config, to_dict
from ssps.eval.metrics import eer, min_dcf

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- metrics ---------------------------------------------------------------------------------------------
@st.composite
def trials(draw, max_size: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a grid of quarters (exact in float64: transforms keep order and ties), both classes."""
    n = draw(st.integers(2, max_size))
    labels = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    assume(labels.any() and not labels.all())
    scores = np.array(draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n)), dtype=np.float64) / 4
    return scores, labels


# Strictly increasing maps that keep distinct grid scores distinct in float64.
TRANSFORMS = {
    "affine": lambda s: 3.0 * s - 7.0,
    "cube": lambda s: s**3 + s,
    "exp": lambda s: np.exp(s / 4),
    "arctan": lambda s: np.arctan(s / 10),
    "rank": lambda s: np.unique(s, return_inverse=True)[1].astype(np.float64),
}
P_TARGETS = st.sampled_from([0.01, 0.05, 0.3, 0.5, 0.9])


@FAST
@given(trials(), P_TARGETS)
def test_metrics_lie_in_the_unit_interval(data, p_target):
    scores, labels = data
    assert 0.0 <= eer(scores, labels) <= 1.0
    assert 0.0 <= min_dcf(scores, labels, p_target) <= 1.0


@FAST
@given(trials(), P_TARGETS, st.sampled_from(sorted(TRANSFORMS)))
def test_metrics_invariant_under_monotonic_transforms(data, p_target, name):
    scores, labels = data
    moved = TRANSFORMS[name](scores)
    assert np.array_equal(np.argsort(moved, kind="stable"), np.argsort(scores, kind="stable"))
    assert eer(moved, labels) == pytest.approx(eer(scores, labels), abs=1e-12)
    assert min_dcf(moved, labels, p_target) == pytest.approx(min_dcf(scores, labels, p_target), abs=1e-12)


@FAST
@given(trials(), P_TARGETS, st.sampled_from([(1.0, 1.0), (1.0, 10.0), (5.0, 1.0)]))
def test_metrics_symmetric_under_swapped_labels_and_negated_scores(data, p_target, costs):
    scores, labels = data
    c_miss, c_fa = costs
    assert eer(-scores, ~labels) == pytest.approx(eer(scores, labels), abs=1e-12)
    # Targets become non-targets: a miss becomes a false alarm, so the prior and the costs swap too.
    swapped = min_dcf(-scores, ~labels, 1 - p_target, c_miss=c_fa, c_fa=c_miss)
    assert swapped == pytest.approx(min_dcf(scores, labels, p_target, c_miss, c_fa), abs=1e-12)


@FAST
@given(trials())
def test_metrics_do_not_depend_on_trial_order(data):
    scores, labels = data
    order = np.random.default_rng(len(scores)).permutation(len(scores))
    assert eer(scores[order], labels[order]) == eer(scores, labels)
    assert min_dcf(scores[order], labels[order]) == min_dcf(scores, labels)


# -- config loader ---------------------------------------------------------------------------------------
def leaf_keys(cls: type = Config, prefix: str = "") -> dict[str, typing.Any]:
    keys = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys.update(leaf_keys(hint, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = hint
    return keys


LEAVES = leaf_keys()
SECTIONS = sorted({k.rsplit(".", 1)[0] for k in LEAVES if "." in k} | {""})
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)


def values_for(hint) -> st.SearchStrategy:
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-(2**40), 2**40)
    if hint is float:
        return FLOATS
    if hint is str:
        return st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=20)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values_for(args[0]), max_size=4).map(tuple)
        return st.tuples(*[values_for(a) for a in args])
    raise AssertionError(f"no strategy for {hint}")


def as_override_text(value, style: str) -> str:
    """The value as a user would type it: YAML flow style, or Python's repr for numbers (1e-05)."""
    if style == "repr" and isinstance(value, float):
        return repr(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n...\n").removesuffix("\n")  # a scalar document ends with '...'


@st.composite
def override(draw) -> tuple[str, typing.Any, str]:
    key = draw(st.sampled_from(sorted(LEAVES)))
    return key, draw(values_for(LEAVES[key])), draw(st.sampled_from(["yaml", "repr"]))


def get(cfg: Config, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@FAST
@given(st.lists(override(), min_size=1, max_size=4))
@example([("optim.lr", 1e-3, "repr")])  # '1e-3' is a string to YAML 1.1; the loader must read a number
@example([("data.augment.noise_manifest", "yes", "yaml"), ("train.epochs", 0, "yaml")])
def test_valid_overrides_round_trip(tmp_path_factory, items):
    texts = [f"{key}={as_override_text(value, style)}" for key, value, style in items]
    cfg = load_config(overrides=texts)
    final = {key: value for key, value, _ in items}  # later overrides win
    for key, value in final.items():
        got = get(cfg, key)
        assert got == (value if LEAVES[key] is not float else float(value)), (key, got, value)
        assert type(got) is type(value) or (LEAVES[key] is float and isinstance(got, float))
    assert config_from_dict(to_dict(cfg)) == cfg
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg


@FAST
@given(st.sampled_from(SECTIONS), NAMES, st.sampled_from(["1", "x", "[1, 2]", "true", "{a: 1}"]))
def test_unknown_keys_are_rejected(section, name, raw):
    key = f"{section}.{name}" if section else name
    assume(key not in LEAVES and not any(k.startswith(key + ".") for k in LEAVES))
    with pytest.raises(ConfigError, match=rf"unknown key '{key}'"):
        load_config(overrides=[f"{key}={raw}"])


@FAST
@given(st.sampled_from(SECTIONS), NAMES)
def test_unknown_keys_in_a_file_are_rejected(tmp_path_factory, section, name):
    key = f"{section}.{name}" if section else name
    assume(key not in LEAVES and not any(k.startswith(key + ".") for k in LEAVES))
    tree: dict = {}
    node = tree
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[key.split(".")[-1]] = 1
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=rf"c.yaml: unknown key '{key}'; valid keys: "):
        load_config(path)


@FAST
@given(st.sampled_from(sorted(k for k, h in LEAVES.items() if h in (int, float, bool))), NAMES)
def test_wrong_types_are_rejected_naming_the_key(key, word):
    assume(word not in ("true", "false", "yes", "no", "on", "off", "y", "n", "null"))
    assume(not word.replace("_", "").isdigit())
    with pytest.raises(ConfigError, match=rf"{key}: expected"):
        load_config(overrides=[f"{key}={word}x"])
