"""One model's rows beyond its cells: the worst case per (norm, eps) and on the OOD sets, the sanity
flags, the attack-failure indicators (probes on robust images, AutoAttack's own checks, model
checks; each probe stored like a cell) and the reliability verdict."""

from __future__ import annotations

import numpy as np

from . import indicators
from .cells import Workspace, cell_seed, seed_everything, zero_gradient_share
from .config import Target
from .files import key
from .progress import Log
from .published import BEST_ROBUST
from .result import rows_of
from .flags import ModelFlags
from .robustness import Record, rows as worst_case_rows, sanity_flags, worst_case
from .store import CellStore
from .tables import fmt_eps


def _zero_gradient_shares(ws: Workspace, name: str, store: CellStore) -> dict[str, float]:
    """Per white-box target of the suite's gradient attacks, the share of clean MNIST images with
    an all-zero input gradient (stored like a cell)."""
    suite, d, mnist = ws.suite, ws.prepared[name], ws.sets["mnist"]
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and a.entry.kind == "gradient"}, key=str)
    shares = {}
    for t in targets:
        seed = cell_seed(suite.seed, name, "zero_gradient_share", t.value)
        k = key(stage="zero_gradient_share", model=d.fingerprint, target=t.value, images=ws.images[("mnist", None)],
                seed=seed)
        hit = store.get(k)
        if hit is None:
            seed_everything(seed)
            shares[t.value] = zero_gradient_share(d.classifiers[t], mnist.x, mnist.y)
            store.put(k, {"share": np.array(shares[t.value])})
        else:
            shares[t.value] = float(hit[0]["share"])
    return shares



def _stored(store: CellStore, k: str, compute) -> dict[str, np.ndarray]:
    hit = store.get(k)
    if hit is not None:
        return hit[0]
    out = compute()
    store.put(k, out)
    return out



def probes(ws: Workspace, name: str, cells: list, wc: ModelFlags, store: CellStore, log: Log) -> list:
    """The attack-failure indicators of one model's MNIST cells, from probes on the images robust in
    the worst case (stored like cells, keyed by the cell, the images and the probe code)."""
    d, suite, mnist = ws.prepared[name], ws.suite, ws.sets["mnist"]
    randomized = bool(getattr(d.model, "randomized", False))
    findings, points = [], wc.main()
    for attack, eps, group in cells:
        if attack is None or eps == 0:
            continue
        c = next(c for c in group if c.dataset == "mnist")
        at = points[(attack.entry.norm, eps)]
        seed = cell_seed(suite.seed, name, "probe", attack.label, eps)
        chosen = at.idx[at.robust]
        chosen = indicators.probe_images(chosen[np.isin(chosen, ws.indices("mnist", attack))], seed)
        if not len(chosen):
            continue
        transfer_x = None
        if attack.target is Target.TRANSFER:
            hit = store.get(c.shared)
            if hit is None:
                continue  # its examples are not stored: nothing to probe
            transfer_x = hit[0]["x_adv"][np.searchsorted(ws.indices("mnist", attack), chosen)]

        def compute():
            log.line(f"{name} {attack.label} eps {fmt_eps(eps)}: probing {len(chosen)} image(s) robust in the worst case")
            seed_everything(seed)
            return indicators.probe_cell(attack, eps, d, mnist.x[chosen], mnist.y[chosen], seed,
                                         ws.prepared.get(attack.source), transfer_x)

        p = _stored(store, indicators.probe_key(c.key, chosen, seed), compute)
        findings += indicators.cell_findings(attack, eps, chosen, p, randomized)
    return findings



def _autoattack_checks(ws: Workspace, cells: list, reports: dict[str, dict]) -> list:
    """AutoAttack's own checks, from the report stored with each of the model's standard AutoAttack
    cells on MNIST (`reports`: those cells' outputs as the runner read them, by key; a cell stored
    before the report existed has none: nothing to read)."""
    findings = []
    for attack, eps, group in cells:
        c = next((c for c in group if c.dataset == "mnist"), None)
        out = reports.get(c.key) if attack is not None and c is not None else None
        if out is not None and "aa_broken_by" in out:
            findings += indicators.autoattack_findings(attack, eps, ws.indices("mnist", attack), out,
                                                       indicators.suite_is_adaptive(ws.suite))
    return findings


def _model_checks(ws: Workspace, name: str, store: CellStore, shares: dict[str, float]) -> list:
    d, suite, mnist = ws.prepared[name], ws.suite, ws.sets["mnist"]
    targets = sorted({a.target for a in suite.attacks if a.target.white_box and a.entry.kind == "gradient"}, key=str)
    idx = np.arange(min(indicators.PROBE_IMAGES, len(mnist.y)))
    seed = cell_seed(suite.seed, name, "model_checks")
    k = indicators.model_key(d.fingerprint, ws.images[("mnist", None)], len(idx), seed, [t.value for t in targets])
    p = _stored(store, k, lambda: indicators.model_probe(d, mnist.x[idx], mnist.y[idx], targets, seed))
    iterates = int(getattr(d.defence, "max_iter", 0) or 0) > 1
    return indicators.model_findings(p, idx, bool(getattr(d.model, "randomized", False)), iterates,
                                     indicators.suite_is_adaptive(suite), shares)



def aggregate(ws: Workspace, name: str, records: dict[str, list[Record]], reports: dict[str, dict], meta: dict,
              store: CellStore, cells: list, log: Log) -> tuple[list[dict], ModelFlags]:
    """Worst-case rows, sanity-flag rows, indicator rows and verdict rows of one model, and its
    robust-flags record (`robustness.worst_case`, computed here once and read by all of them);
    `reports`: the outputs of its MNIST cells that hold an attack's report (AutoAttack's), by key."""
    rows = []
    clean, attacked = records["mnist"][0], records["mnist"][1:]
    wc = worst_case(clean, attacked, {ds: rs[1:] for ds, rs in records.items() if ds != "mnist"})
    for ds, label, eps, metrics in worst_case_rows(wc):
        rows += rows_of(name, label, eps, ds, metrics, "worst_case")
    shares = _zero_gradient_shares(ws, name, store)
    flags, why = sanity_flags(wc, attacked, shares)
    meta["flags"][name] = why
    rows += rows_of(name, "sanity", 0.0, "mnist", {**{f"zero_gradient_share_{t}": v for t, v in shares.items()}, **flags,
                                                 "potentially_unreliable": int(any(flags.values()))}, "sanity")
    findings = (probes(ws, name, cells, wc, store, log) + _autoattack_checks(ws, cells, reports)
                + _model_checks(ws, name, store, shares)
                + indicators.record_findings(wc, attacked, ws.prepared[name].rejector is not None, BEST_ROBUST)
                + indicators.sanity_findings(flags, why, attacked))
    for f in findings:
        m = {f.name: f.count, f"{f.name}_of": f.n, f"{f.name}_raised": int(f.raised)}
        if f.value is not None:
            m[f"{f.name}_value"] = f.value
        rows += rows_of(name, f.attack, 0.0 if f.eps is None else f.eps, "mnist", m, "indicator")
    verdicts = indicators.verdict(findings, wc)
    for v in verdicts:
        rows += rows_of(name, f"verdict_{v['norm']}", v["eps"], "mnist", {"potentially_unreliable": int(v["potentially_unreliable"])},
                      "verdict")
    meta["verdict"][name] = {"by_eps": verdicts, "findings": [f.as_dict() for f in findings]}
    return rows, wc
