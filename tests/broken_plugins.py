"""Outside plugins that break docs/plugins.md's contract, the way a new user writing one might, for
tests/test_before_training.py (named in its suites as `broken_plugins:<name>`; not registered for
users). Each must be refused by `validate` and before any training by `run`, or, for the one that
fails only in the middle of a run, end it with one message that names it."""

import numpy as np
import torch


def builder_without_val(train, seed: int, hidden: int = 8):
    """A model builder without the `val` parameter the runner passes."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


class _Noise:
    def __init__(self, size: float):
        self.size = size

    def generate(self, x, y=None):
        return np.clip(x + np.random.uniform(-self.size, self.size, x.shape).astype(x.dtype), 0, 1)


def attack_without_eps(classifier, strength: float = 0.1):
    """An attack factory without the `eps` parameter the runner passes."""
    return _Noise(strength)


def string_defence(model):
    """A defence factory returning something other than an ART preprocessor."""
    return "a purifier"


class _Raises:
    def __init__(self, eps: float, above: float):
        self.eps, self.above = eps, above

    def generate(self, x, y=None):
        if self.eps > self.above:
            raise RuntimeError(f"no attack above eps {self.above}")
        return _Noise(self.eps).generate(x, y)


def raises_above(classifier, eps: float, above: float = 1.0):
    """Uniform noise in the eps ball, raising in generate at an eps above `above`: fails in the middle of
    a run (a dry run at the first eps passes)."""
    return _Raises(eps, above)


raises_above.norm = "linf"
raises_above.kind = "decision"


def raises(classifier, eps: float):
    """An attack whose generate always raises."""
    return _Raises(eps, -1.0)


raises.kind = "decision"


def defence_needing_levels(model, levels: int):
    """A defence factory with a required parameter that the suite does not give."""
    return None


class _Sleeps:
    def __init__(self, eps: float, above: float, marker: str):
        self.eps, self.above, self.marker = eps, above, marker

    def generate(self, x, y=None):
        if self.eps > self.above:
            import os
            import time
            with open(self.marker, "w") as f:  # the cell has started, in this process
                f.write(str(os.getpid()))
            time.sleep(600)
        return _Noise(self.eps).generate(x, y)


def sleeps_above(classifier, eps: float, marker: str, above: float = 1.0):
    """Uniform noise in the eps ball, but at an eps above `above` a cell that takes ten minutes (a standard
    AutoAttack cell can take an hour), writing its process id to the file `marker` when it starts."""
    return _Sleeps(eps, above, marker)


sleeps_above.norm = "linf"
sleeps_above.kind = "decision"
