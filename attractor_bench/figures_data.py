"""What a run's figures need beyond its cells: the attack the figures show, the cell whose
similarity scores the histograms show, and the iterates of the fixed-point map on one attacked
image (the paper's Figures 11 and 12)."""

from __future__ import annotations

import numpy as np
import torch

from .cells import Defended, cell_seed, run_attack, seed_everything
from .config import AttackSpec, Suite, Target


def figure_attack(suite: Suite) -> AttackSpec | None:
    """The attack the figures show: the first L-inf attack that also ran on the OOD sets (the
    paper's Figure 13 uses FGSM), else the first bounded L-inf one."""
    linf = [a for a in suite.attacks if a.norm == "linf" and a.entry.bounded and a.target is not Target.TRANSFER
            and not a.entry.needs_rejector]
    return next((a for a in linf if a.ood), linf[0] if linf else None)



def figure_cell(suite: Suite) -> tuple[str, float] | None:
    """The attacked (label, eps) whose similarity scores the histograms show: eps nearest 0.1."""
    a = figure_attack(suite)
    return None if a is None else (a.label, min(a.eps, key=lambda e: abs(e - 0.1)))


ITERATES = 5  # iterates shown per attacked input (the paper's Figures 11 and 12 show a few)



def iterates(name: str, d: Defended, attack: AttackSpec, mnist, seed: int) -> dict:
    """The first MNIST test image attacked by `attack` at 0 and each of its eps (through the same
    classifier as its cells), and its first ITERATES iterates x_k = G^k(x_0) with the class
    predicted from each: the paper's Figures 11 and 12."""
    x, y = mnist.x[:1], mnist.y[:1]
    eps_list = [0.0, *attack.eps]
    rows = []
    for eps in eps_list:
        s = cell_seed(seed, name, "figure", attack.label, eps)
        seed_everything(s)
        xa = x if eps == 0 else run_attack(attack, eps, d.classifiers[attack.target], x, y, s, d.rejector)
        cur = torch.from_numpy(xa)
        steps = [cur]
        with torch.no_grad():
            for _ in range(ITERATES):
                cur = d.model.reconstruct(cur)
                cur = cur.clamp(0, 1) if d.defence.clip else cur
                steps.append(cur)
            rows.append((torch.cat(steps).view(-1, 28, 28).numpy(), d.model(torch.cat(steps)).argmax(1).numpy()))
    return {"model": name, "attack": attack.label, "eps": eps_list, "images": np.stack([r[0] for r in rows]),
            "preds": np.stack([r[1] for r in rows]), "label": int(y[0])}
