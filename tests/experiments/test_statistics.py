"""Paired differences and Student-t intervals, against hand computations and printed t tables."""

import math

import pytest

from img2vid.experiments.statistics import mean_std, paired_difference, student_t_quantile, verdict_word


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (9, 2.2621572),
                                              (29, 2.0452296), (1000, 1.9623391)])
def test_t_quantile_matches_the_printed_table(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def test_t_quantile_is_symmetric_and_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 7, 50):
        for p in (0.6, 0.9, 0.995):
            assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=1e-8)
            assert student_t_quantile(1 - p, df) == pytest.approx(-student_t_quantile(p, df), abs=1e-12)


def test_paired_interval_by_hand():
    baseline = [0.50, 0.60, 0.55, 0.40, 0.45]
    arm = [0.52, 0.64, 0.56, 0.45, 0.48]  # differences 0.02, 0.04, 0.01, 0.05, 0.03
    out = paired_difference(arm, baseline)
    # mean 0.03; std sqrt(0.001 / 4) = 0.0158114; half width 2.7764451 * 0.0158114 / sqrt(5) = 0.0196324
    assert out["mean"] == pytest.approx(0.03)
    assert out["std"] == pytest.approx(math.sqrt(0.00025))
    assert out["ci"] == pytest.approx([0.03 - 0.0196324, 0.03 + 0.0196324], abs=1e-7)
    assert out["wins"] == 5 and out["n"] == 5
    assert verdict_word(out["ci"]) == "better"


def test_pairing_matters_an_unpaired_reading_would_not_resolve_it():
    baseline = [0.50, 0.60, 0.55, 0.40, 0.45]
    arm = [0.52, 0.64, 0.56, 0.45, 0.48]
    # The arms' own spreads (~0.08) dwarf the difference; the paired interval still excludes zero.
    assert mean_std(arm)[1] > 0.07
    assert paired_difference(arm, baseline)["ci"][0] > 0
    shuffled = paired_difference(arm, [0.45, 0.40, 0.60, 0.55, 0.50])  # same values, pairing broken
    assert shuffled["ci"][0] < 0 < shuffled["ci"][1]


def test_verdict_words_and_edge_cases():
    assert verdict_word([-0.03, -0.01]) == "worse"
    assert verdict_word([-0.01, 0.02]) == "no difference resolved"
    assert verdict_word([0.0, 0.0]) == "no difference resolved"  # identical runs: nothing resolved
    one = paired_difference([0.5], [0.4])
    assert one["mean"] == pytest.approx(0.1) and all(math.isnan(v) for v in one["ci"])
    assert verdict_word(one["ci"]) == "no interval (one seed)"
    assert paired_difference([0.5, 0.5], [0.5, 0.5])["wins"] == 0  # a tie is not a win


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="p must lie"):
        student_t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df"):
        student_t_quantile(0.9, 0)
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])
