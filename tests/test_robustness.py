"""Worst case per sample (the robust-flags record) and the sanity flags, on hand-made per-sample records."""

import numpy as np
import pytest

from attractor_bench import flags as flags_mod
from attractor_bench.robustness import Record, rows, sanity_flags, worst_case
from attractor_bench.cells import subset

N = 10


def rec(label, correct, accepted=None, eps=0.1, norm="linf", kind="gradient", target="pipeline", single_step=False, idx=None):
    idx = np.arange(N) if idx is None else np.asarray(idx)
    correct = np.asarray(correct, bool) if correct is not None else None
    accepted = np.ones(len(idx), bool) if accepted is None else np.asarray(accepted, bool)
    return Record(label, eps, norm, kind, single_step, target, idx, correct, accepted)


def bits(s):
    return [c == "1" for c in s]


CLEAN = rec("none", bits("1111111110"), eps=0.0, norm="none", kind="clean", target="none")


def table_rows(clean, records):
    """(label, eps, metrics) of the MNIST worst-case rows the table gets from the model's record."""
    return [(label, eps, m) for ds, label, eps, m in rows(worst_case(clean, records)) if ds == "mnist"]


def sanity(clean, records, shares):
    return sanity_flags(worst_case(clean, records), records, shares)


def test_worst_case_is_robust_only_if_every_attack_failed():
    a = rec("a", bits("0111111110"))
    b = rec("b", bits("1011111111"))  # sample 9 right under attack but wrong clean: still not robust
    (label, eps, m), = table_rows(CLEAN, [a, b])
    assert (label, eps) == ("worst_case_linf", 0.1)
    assert m["accuracy"] == pytest.approx(0.7) and m["n_samples"] == N and m["n_attacks"] == 2


def test_worst_case_with_rejection():
    a = rec("a", bits("0111111111"), accepted=bits("0111111111"))  # sample 0 wrong but rejected: safe? no, not accepted&correct
    b = rec("b", bits("1011111111"), accepted=bits("1111111110"))  # sample 1 wrong and accepted: the attacker wins
    (_, _, m), = table_rows(CLEAN, [a, b])
    # end to end: accepted and correct clean and under every attack -> samples 2..8
    assert m["end_to_end_accuracy"] == pytest.approx(0.7)
    # accepted and wrong under some attack (or clean): sample 1 (b); sample 9 is wrong clean and accepted clean
    assert m["accepted_wrong"] == pytest.approx(0.2)


def test_worst_case_on_nested_subsets_and_on_all_images():
    full = rec("full", bits("0111111111"))
    small = rec("small", bits("00"), idx=[1, 5])  # breaks samples 1 and 5
    rows = {label: m for label, _, m in table_rows(CLEAN, [full, small])}
    assert rows["worst_case_linf"]["n_samples"] == 2 and rows["worst_case_linf"]["accuracy"] == 0.0
    assert rows["worst_case_linf_all_images"]["n_samples"] == N
    assert rows["worst_case_linf_all_images"]["accuracy"] == pytest.approx(0.8)


def test_worst_case_groups_by_norm_and_eps():
    rows = table_rows(CLEAN, [rec("a", bits("0" * N)), rec("b", bits("1" * N), eps=0.2), rec("c", bits("1" * N), eps=1.0, norm="l2")])
    assert [(label, eps) for label, eps, _ in rows] == [("worst_case_l2", 1.0), ("worst_case_linf", 0.1), ("worst_case_linf", 0.2)]
    assert [m["accuracy"] for _, _, m in rows] == pytest.approx([0.9, 0.0, 0.9])


def test_worst_case_ood_counts_accepted_under_any_attack():
    ood = {"noise": [rec("a", None, accepted=bits("1100000000")), rec("b", None, accepted=bits("0110000000"))]}
    (ds, label, eps, m), = [r for r in rows(worst_case(CLEAN, [], ood)) if r[0] != "mnist"]
    assert (ds, label, eps) == ("noise", "worst_case_linf", 0.1)
    assert m == {"accepted": pytest.approx(0.3), "n_samples": N, "n_attacks": 2}


def test_no_flags_on_a_consistent_evaluation():
    recs = [rec("fgsm", bits("1111111100"), single_step=True), rec("pgd", bits("1111110000")),
            rec("square", bits("1111111000"), kind="score"), rec("transfer", bits("1111111110"), target="transfer")]
    flags, why = sanity(CLEAN, recs, {"pipeline": 0.0})
    assert flags == {"flag_black_box_beats_white_box": 0, "flag_single_step_beats_iterative": 0, "flag_zero_gradients": 0}
    assert why == []


def test_each_flag_is_raised():
    recs = [rec("fgsm", bits("1110000000"), single_step=True), rec("pgd", bits("1111110000")),
            rec("square", bits("11"), kind="score", idx=[6, 7]),  # beats pgd on its 2 images? pgd has 0/2 right: no
            rec("hsj", bits("0"), kind="decision", idx=[0]),  # pgd is right on image 0: the black box wins there
            rec("pgd05", bits("1111000000"), eps=0.5)]
    flags, why = sanity(CLEAN, recs, {"pipeline": 0.02, "bpda": 0.0})
    assert flags == {"flag_no_collapse_at_eps_0.5": 1, "flag_black_box_beats_white_box": 1,
                     "flag_single_step_beats_iterative": 1, "flag_zero_gradients": 1}
    text = " ".join(why)
    assert "`hsj`" in text and "`square`" not in text and "`fgsm`" in text and "40.00%" in text and "2.00%" in text


def test_collapse_flag_not_raised_below_ten_percent():
    flags, _ = sanity(CLEAN, [rec("pgd05", bits("0000000000"), eps=0.5)], {})
    assert flags == {"flag_no_collapse_at_eps_0.5": 0}


def test_subsets_are_seeded_sorted_and_nested():
    small, large = subset(1000, 50, 0), subset(1000, 200, 0)
    assert len(small) == 50 and np.all(np.diff(small) > 0) and set(small) <= set(large)
    np.testing.assert_array_equal(small, subset(1000, 50, 0))
    assert not np.array_equal(small, subset(1000, 50, 1))
    np.testing.assert_array_equal(subset(10, None, 0), np.arange(10))


def test_the_record_holds_each_worst_case_image_by_image_and_the_attacks_that_narrowed_it():
    a = rec("a", bits("0111111111"), accepted=bits("0111111111"))
    b = rec("b", bits("1011111111"), accepted=bits("1111111110"))
    small = rec("small", bits("00"), idx=[1, 5], eps=0.2)
    wc = worst_case(CLEAN, [a, b, rec("c", bits("1" * N), eps=0.2), small])
    assert list(wc.clean.robust) == bits("1111111110") and wc.clean.attacks == ()
    f01, f02 = wc.main()[("linf", 0.1)], wc.main()[("linf", 0.2)]
    assert f01.attacks == ("a", "b") and list(f01.robust) == bits("0011111110")
    assert list(f01.safe) == bits("0011111110") and list(f01.fooled) == bits("0100000001")
    assert list(f02.idx) == [1, 5] and f02.attacks == ("c", "small") and not f02.robust.any()
    (full,) = [f for f in wc.points if f.all_images]
    assert (full.eps, full.attacks, int(full.robust.sum())) == (0.2, ("c",), 9)


def test_narrowing_returns_what_an_attack_newly_broke():
    f = worst_case(CLEAN, []).clean.start("linf", 0.1, np.arange(N))
    newly = f.narrow("a", np.arange(N), np.array(bits("0011111111")), np.ones(N, bool))
    assert list(newly) == bits("1100000000")
    newly = f.narrow("b", np.arange(N), np.array(bits("1001111111")), np.ones(N, bool))
    assert list(newly) == bits("0010000000") and f.attacks == ("a", "b") and f.metrics()["accuracy"] == pytest.approx(0.6)


def test_the_record_file_keeps_every_flag(tmp_path):
    wc = worst_case(CLEAN, [rec("a", bits("0111111111"), accepted=bits("0111111011")), rec("small", bits("01"), idx=[1, 5])])
    (tmp_path / flags_mod.FILE).write_text(flags_mod.dumps({"m": wc}, N))
    back = flags_mod.read(tmp_path)["m"]
    for f, g in zip([wc.clean, *wc.points], [back.clean, *back.points], strict=True):
        assert (f.norm, f.eps, f.attacks, f.all_images) == (g.norm, g.eps, g.attacks, g.all_images)
        for k in ("idx", *flags_mod.FIELDS):
            np.testing.assert_array_equal(getattr(f, k), getattr(g, k))
