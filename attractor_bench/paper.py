"""The numbers Alipour & SeyyedSalehi report (Tables 1-2 and section 3.2), in percent: the
reproduction targets shown beside a suite's results when it sets `reference: paper`.
Keys: (model, eps, dataset, metric)."""

EPS_TABLE = 20 / 255

_OOD = ("ood_accuracy", "ood_precision", "ood_recall")
_ROWS = {
    # (model, eps, dataset): values
    ("baseline", 0.0, "fashion_mnist"): (99.15, 99.15, 99.15),
    ("baseline", 0.0, "cifar10_bw"): (99.50, 99.84, 99.15),
    ("baseline", EPS_TABLE, "fashion_mnist"): (88.84, 99.67, 77.93),
    ("baseline", EPS_TABLE, "cifar10_bw"): (88.93, 99.91, 77.93),
    ("attractor", 0.0, "fashion_mnist"): (98.84, 98.67, 99.01),
    ("attractor", 0.0, "cifar10_bw"): (99.28, 99.55, 99.01),
    ("attractor", EPS_TABLE, "fashion_mnist"): (98.48, 98.90, 98.04),
    ("attractor", EPS_TABLE, "cifar10_bw"): (98.88, 99.71, 98.04),
}

PAPER: dict[tuple[str, float, str, str], float] = {
    ("baseline", 0.0, "mnist", "accuracy"): 98.17,
    ("attractor", 0.0, "mnist", "accuracy"): 88.73,
    ("baseline", EPS_TABLE, "mnist", "accuracy"): 27.84,
    ("attractor", EPS_TABLE, "mnist", "accuracy"): 87.13,
    **{(*key, m): v for key, vals in _ROWS.items() for m, v in zip(_OOD, vals)},
}


# Goals for the `attractor_full` preset (beyond the paper): the attractor loss on all 50,000 training
# images should reach these, in percent, lower bounds. Keys: (eps, dataset, metric).
GOALS: dict[tuple[float, str, str], float] = {
    (0.0, "mnist", "accuracy"): 98.0,
    (EPS_TABLE, "mnist", "accuracy"): 90.0,
    (0.0, "fashion_mnist", "ood_accuracy"): 99.0,
    (0.0, "cifar10_bw", "ood_accuracy"): 99.0,
    (EPS_TABLE, "fashion_mnist", "ood_accuracy"): 98.5,
    (EPS_TABLE, "cifar10_bw", "ood_accuracy"): 98.5,
}
