"""Every contract a suite's models, defences and attacks must keep, checked before any training
(`check_suite`), and the one message for an exception raised inside outside code during a run
(`plugin_errors`).

`check_suite(suite)` runs in `attractor-bench validate` and at the start of `run_suite` (and of
`attractor-bench ood`, for its models), before any data is loaded or model trained:

1. **Optional dependencies**: an attack that needs an extra (`autoattack_standard`: `pyautoattack`,
   the `autoattack` extra) is refused when its module does not import, with the install command.
2. **Signatures** of the outside callables (docs/plugins.md#the-contract): a model builder must
   take `build(train=, val=, seed=, **params)`, a defence factory `factory(model, **params)` (and
   `context=` if it names it), an attack factory `factory(classifier, eps=, **params)` (an ART
   attack class named by reference, such as `art.attacks.evasion:ElasticNet`, included: ART's
   attacks without `eps` are refused here), each with the suite's `params`. Bound with
   `inspect.Signature.bind`, the way Python would call them.
3. **A dry run** on `DRY_IMAGES` (2) seeded random images, on the CPU, through an untrained
   network of the right shape built without training: the preset's `AttractorNet` for an attractor
   preset, the recipe's `make(**params)` for a comparison model (with its evaluation attributes,
   so a randomized model gets EoT), and for an outside model, whose builder trains, a stand-in
   (`StandIn`: Flatten, Linear 784 -> 10) with the same contract (images (N, 1, 28, 28) in [0, 1]
   -> logits (N, 10)). Per model: the defence built through its factory (a trained defence's
   networks are built by their recipes' `make`, untrained, on tiny synthetic splits, in a
   temporary cache), checked to be an ART `Preprocessor` or None, the classifiers the runner
   builds (`make_classifier`) and one pass of the defended pipeline (`cells.evaluate`). Per
   (model, attack) pair the runner would compute: the attack built through its factory at its
   first eps above 0 and `generate` run on the two images, through the classifier of its target
   (a transfer attack: its source model's network), with the labels the classifier predicts;
   the output must be an array of the images' shape, finite, in [0, 1] and, for a bounded attack,
   within eps (what the run checks after training). A built-in attack is built once with the
   suite's parameters (their values are checked) and run with the smallest budgets
   (`DRY_BUDGETS`; standard AutoAttack's members: `AUTOATTACK_DRY`), so that the leaderboard suite's
   59 (model, attack) pairs take about a second; an outside attack runs as the suite gives it.

The dry run runs on one torch thread and leaves the random generators (`random`, numpy, torch) and
the thread count as it found them, so the run's numbers do not depend on it. A `validate` without `--import-plugins` has stand-ins for outside
code (`plugins.references("find")`): their signatures and dry runs need the import, and are done
under `validate --import-plugins` and by `run`; the built-in parts (and ART classes named by
reference, which import no outside code) are checked all the same.

`plugin_errors(*suites)`: an exception raised inside outside code during a run (its traceback
passes through a module of a model builder, defence factory or attack factory of the suite that
is not built in) becomes a `PluginFailure` (exit code 1) that names the suite key, the plugin and
the exception. Cells are stored as each finishes, so the finished ones stay in the cache.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import Preprocessor
from torch import nn

from .attacks import ATTACKS, perturbation_norms
from .cache import Context
from .cells import Defended, applies, evaluate, seed_everything
from .config import AttackSpec, ModelSpec, Suite, Target
from .data import Split
from .errors import AttractorBenchError, ConfigError, PluginFailure
from .models import AttractorNet, N_CLASSES
from .plugins import BUILT_IN, is_stand_in
from .recipes import Recipe

DRY_IMAGES = 2
CONTRACT = "docs/plugins.md#the-contract"
# attack (built-in name) -> (module it imports, the extra that installs it)
EXTRAS = {"autoattack_standard": ("pyautoattack", "autoattack")}
_LIBRARIES = {"art", "torch", "numpy", "attractor_bench", "scipy", "sklearn"}  # never blamed as a whole package
# The dry run of a built-in attack replaces the budgets it would spend with the smallest ones (by
# parameter name, those its `params` allow, as tests/test_contracts.py does), after building it
# once with the suite's own parameters (so their values are checked too): the same code paths in
# milliseconds. Measured on this project's 2-core machine, one thread: the 14 built-in attacks on
# the attractor network took 7.5 s at their registry budgets (C&W L2 2.1 s, ART's AutoAttack 2.4 s)
# and 0.4 s at these.
DRY_BUDGETS = {
    "max_iter": 1, "binary_search_steps": 1, "max_halving": 1, "max_doubling": 1, "largest_const": 0.02,
    "nb_grads": 2, "max_eval": 5, "init_eval": 2, "init_size": 2, "num_trial": 1, "sample_size": 1,
    "nb_restarts": 1, "num_random_init": 1, "nb_random_init": 1,
    "apgd_max_iter": 1, "apgd_restarts": 1, "deepfool_max_iter": 1, "square_max_iter": 1, "square_restarts": 1,
}
# Standard AutoAttack takes no budget parameters (the authors' budgets are the point): its members'
# budgets are set on the built object instead, for the dry run only (at the authors' budgets, 13 s
# for two models on two images; 0.1 s at these).
AUTOATTACK_DRY = {"apgd": {"n_iter": 2, "n_restarts": 1, "eot_iter": 2}, "apgd_targeted": {"n_iter": 2, "n_target_classes": 1},
                  "fab": {"n_iter": 2, "n_target_classes": 1}, "square": {"n_queries": 2}}


class StandIn(nn.Module):
    """The untrained network a dry run uses for an outside model (its builder trains, so it is not
    called before the run): images (N, 1, 28, 28) in [0, 1] -> logits (N, 10), like the model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class Checked:
    """What `check_suite` did: dry runs of models (defence and pipeline) and of (model, attack)
    pairs, what it skipped (outside code that was only found, not imported) and its seconds."""

    models: int = 0
    attacks: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"contracts checked: {self.models} model{'s' * (self.models != 1)} and {self.attacks} "
                f"(model, attack) pair{'s' * (self.attacks != 1)} dry-run on {DRY_IMAGES} images in {self.seconds:.1f} s")
        if self.skipped:
            text += (f"; not checked, outside code not imported: {', '.join(self.skipped)} (validate --import-plugins "
                     "or run checks them)")
        return text


# ------------------------------------------------------------------------------------------ naming

@dataclass(frozen=True)
class Plugin:
    """A callable of a suite that is not built in, with the suite key that names it."""

    key: str  # e.g. "attacks[2]", "models.m.preset", "models.m.defence", "defence"
    name: str  # as the suite names it: "my_pkg:make_attack", or an entry point's name
    origin: str
    obj: Any
    kind: str  # model | defence | attack

    @property
    def who(self) -> str:
        return who(self.key, self.name, self.origin)


def who(key: str, name: str, origin: str) -> str:
    """`attacks[2] (my_pkg:make_attack)`; an entry point also says where it comes from."""
    if origin == BUILT_IN or origin.startswith("reference"):
        return f"{key} ({name})"
    return f"{key} ({name}, {origin})"


def defence_key(suite: Suite, spec: ModelSpec) -> str:
    return "defence" if spec.defence is suite.defence else f"models.{spec.name}.defence"


def outside(suite: Suite) -> list[Plugin]:
    """The suite's callables that are not built in (references and entry points), each once."""
    found, seen = [], set()

    def add(p: Plugin) -> None:
        if (p.key, p.name) not in seen:
            seen.add((p.key, p.name))
            found.append(p)

    for spec in suite.models:
        if spec.origin != BUILT_IN and spec.train is None and not isinstance(spec.builder, Recipe):
            add(Plugin(f"models.{spec.name}.preset", spec.preset, spec.origin, spec.builder, "model"))
        if spec.defence.origin != BUILT_IN and spec.defence.factory is not None:
            add(Plugin(defence_key(suite, spec), spec.defence.name, spec.defence.origin, spec.defence.factory, "defence"))
    for i, a in enumerate(suite.attacks):
        if a.origin != BUILT_IN:
            add(Plugin(f"attacks[{i}]", a.name, a.origin, a.entry.factory, "attack"))
    return found


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------------------------- the checks

def check_suite(suite: Suite, attacks: bool = True) -> Checked:
    """Check every contract of `suite` before any training (see the module docstring); ConfigError
    naming the suite file, the key and the plugin otherwise. `attacks=False`: models and
    defences only (an OOD run does not run the suite's attacks)."""
    t0 = time.perf_counter()
    done = Checked()
    if attacks:
        check_dependencies(suite)
    check_signatures(suite, attacks)
    _dry_run(suite, attacks, done)
    done.seconds = time.perf_counter() - t0
    return done


def check_dependencies(suite: Suite) -> None:
    """The optional dependencies the suite's attacks need are installed."""
    for i, a in enumerate(suite.attacks):
        if a.origin != BUILT_IN or a.name not in EXTRAS or a.entry is not ATTACKS[a.name]:
            continue
        module, extra = EXTRAS[a.name]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"{suite.path}: attacks[{i}] ({a.name}) needs the optional dependency {module!r}, which does "
                              f"not import here ({_one_line(e)}). Install the extra '{extra}': pip install "
                              f"'attractor-bench[{extra}]' (in a checkout: pip install -e '.[{extra}]'), or remove the "
                              "attack.") from None


def _signature(obj) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check here (the dry run calls it)
        return None


def _why(sig: inspect.Signature, args: tuple, kwargs: dict) -> str | None:
    """Why calling a callable of signature `sig` with (args, kwargs) would fail (None: it would bind)."""
    try:
        sig.bind(*args, **kwargs)
        return None
    except TypeError as e:
        params = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for k in kwargs:
            p = params.get(k)
            if (p is None and not takes_any) or (p is not None and p.kind is p.POSITIONAL_ONLY):
                return f"it does not take the keyword argument {k!r}"
        if args and not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                            for p in params.values()):
            return "it takes no positional argument"
        missing = re.fullmatch(r"missing a required (?:keyword-only )?argument: '(\w+)'", str(e))
        if missing:
            return (f"it requires the argument {missing.group(1)!r}, which the runner does not pass and the suite's "
                    "params do not give")
        return str(e)


def check_signatures(suite: Suite, attacks: bool = True) -> None:
    """Each outside callable can be called the way the runner calls it, with the suite's params."""
    for p in outside(suite):
        if is_stand_in(p.obj) or (p.kind == "attack" and not attacks):
            continue
        sig = _signature(p.obj)
        if sig is None:
            continue
        if p.kind == "model":
            spec = next(m for m in suite.models if f"models.{m.name}.preset" == p.key)
            why = _why(sig, (), {"train": None, "val": None, "seed": 0, **spec.params})
            call = "build(train=..., val=..., seed=..., **params), returning a trained torch.nn.Module"
        elif p.kind == "defence":
            spec = next(m for m in suite.models if defence_key(suite, m) == p.key)
            context = {"context": None} if "context" in sig.parameters else {}
            why = _why(sig, (None,), {**spec.defence.params, **context})
            call = "factory(model, **params), returning an ART preprocessor or None"
        else:
            a = suite.attacks[int(p.key[len("attacks["):-1])]
            why = _why(sig, (None,), {"eps": 0.1, **a.entry.defaults, **a.params})
            call = "factory(classifier, eps=..., **params), returning an object with generate(x, y)"
            if why is not None and "'eps'" in why and getattr(p.obj, "__module__", "").startswith("art."):
                why += (f" (ART's {getattr(p.obj, '__name__', p.name)} has no budget: name a factory of your own that "
                        "takes eps and builds it, with `bounded = False` on it for a minimal-perturbation attack)")
        if why is not None:
            raise ConfigError(f"{suite.path}: {p.who}: {why}. The runner calls {call} ({CONTRACT}); "
                              "change the callable or the suite's parameters.")


# ------------------------------------------------------------------------------------------ dry run

class _DryContext(Context):
    """The Context a defence factory gets in a dry run: tiny synthetic splits, a temporary cache,
    and `trained(recipe)` giving the recipe's network untrained (`make`), so nothing trains."""

    def trained(self, recipe: Recipe, **params: Any) -> nn.Module:
        train, evaluation = recipe.split(params)
        module = recipe.make(**train)
        for k, v in evaluation.items():
            setattr(module, k, v)
        return module.eval()


def _split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, N_CLASSES, n).astype(np.int64))


@contextmanager
def _isolated() -> Iterator[None]:
    """The block on one torch thread (two images: more threads only wait for each other, ten times
    slower on a busy machine), with the random generators and the thread count as they were
    before it afterwards (the run's numbers do not see the dry run)."""
    py, npy, threads = random.getstate(), np.random.get_state(), torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.set_num_threads(1)
            yield
        finally:
            torch.set_num_threads(threads)
            random.setstate(py)
            np.random.set_state(npy)


def untrained(spec: ModelSpec) -> nn.Module:
    """A network of `spec`'s shape, built without training (see the module docstring)."""
    if spec.train is not None:
        return AttractorNet(spec.train.output_activation).eval()
    if isinstance(spec.builder, Recipe):
        return _DryContext(_split(1, 0), _split(1, 1)).trained(spec.builder, **spec.params)
    return StandIn().eval()


def _culprit(suite: Suite, e: BaseException, default: str) -> str:
    """Who raised `e`: the outside plugin its traceback passes through, else `default`."""
    blamed = blame(e, suite)
    return blamed if blamed is not None else default


def _dry_run(suite: Suite, attacks: bool, done: Checked) -> None:
    x = np.random.default_rng(0).random((DRY_IMAGES, 1, 28, 28), dtype=np.float32)
    skipped = {p.who for p in outside(suite) if is_stand_in(p.obj) and (attacks or p.kind != "attack")}
    prepared: dict[str, Defended] = {}
    with _isolated(), tempfile.TemporaryDirectory(prefix="attractor-bench-dry-run-") as tmp:
        ctx = _DryContext(_split(16, 0), _split(16, 1), suite.seed, Path(tmp), device="cpu")
        for spec in suite.models:
            d = _dry_model(suite, spec, ctx, x)
            if d is not None:
                prepared[spec.name] = d
                done.models += 1
        for i, a in enumerate(suite.attacks if attacks else ()):
            if is_stand_in(a.entry.factory):
                continue
            eps = next((e for e in a.eps if e > 0), None)
            if eps is None:  # a cell at eps 0 is the clean images: the attack never runs
                continue
            for spec in suite.models:
                if spec.name not in prepared or not applies(a, prepared[spec.name].rejector is not None):
                    continue
                if a.target is Target.TRANSFER and a.source not in prepared:
                    continue
                _dry_attack(suite, i, a, eps, spec, prepared, x)
                done.attacks += 1
    done.skipped = sorted(skipped)


def _dry_model(suite: Suite, spec: ModelSpec, ctx: Context, x: np.ndarray) -> Defended | None:
    """The untrained model of `spec` with its defence and rejector, checked; None when a part of it
    is outside code that was only found (validate without --import-plugins)."""
    if is_stand_in(spec.builder) or is_stand_in(spec.defence.factory):
        return None
    where = f"{suite.path}: {who(f'models.{spec.name}.preset', spec.preset, spec.origin)}"
    try:
        model = untrained(spec)
    except ValueError as e:  # a recipe's unknown parameter
        raise ConfigError(f"{where}: {e}") from None
    d_who = who(defence_key(suite, spec), spec.defence.name, spec.defence.origin)
    fail = f"{suite.path}: {d_who}"
    try:
        defence = spec.defence.build(model, ctx)
    except AttractorBenchError as e:
        raise ConfigError(f"{fail}: building it for model {spec.name!r} failed: {e}") from None
    except Exception as e:
        raise ConfigError(f"{fail}: building it for model {spec.name!r} in a dry run (an untrained network, no training) "
                          f"raised {_one_line(e)}. Check the factory and its parameters ({CONTRACT}).") from e
    if defence is not None and not isinstance(defence, Preprocessor):
        raise ConfigError(f"{fail}: the factory returned {type(defence).__name__} for model {spec.name!r}; a defence "
                          "factory must return an ART preprocessor (art.defences.preprocessor.Preprocessor, ideally "
                          f"PreprocessorPyTorch) or None ({CONTRACT}).")
    try:
        d = Defended(model, defence, suite.rejector.build(defence, ctx.val.x), training_cost=spec.training_cost())
        d.classifiers  # noqa: B018  (the classifiers the runner builds: network, pipeline, bpda)
        evaluate(d, x)
    except Exception as e:
        culprit = _culprit(suite, e, d_who if defence is not None else who(f"models.{spec.name}.preset", spec.preset,
                                                                           spec.origin))
        raise ConfigError(f"{suite.path}: {culprit}: the defended pipeline of model {spec.name!r} failed a dry run on "
                          f"{DRY_IMAGES} images (an untrained network): {_one_line(e)}. Check the defence against "
                          f"{CONTRACT}.") from e
    return d


def _dry_attack(suite: Suite, i: int, a: AttackSpec, eps: float, spec: ModelSpec, prepared: dict, x: np.ndarray) -> None:
    """Attack `i` built at `eps` and run on `x` against model `spec`, as a cell would."""
    d = prepared[spec.name]
    source = prepared[a.source] if a.target is Target.TRANSFER else d
    target = Target.NETWORK if a.target is Target.TRANSFER else a.target
    a_who = who(f"attacks[{i}]", a.name, a.origin)
    on = (f"on model {spec.name!r} (target {a.target.value}, eps {eps:g}) in a dry run on {DRY_IMAGES} images through an "
          "untrained network")
    try:
        classifier = source.classifier(target, a.loss)
        y = classifier.predict(x).argmax(1)
    except Exception as e:
        raise ConfigError(f"{suite.path}: {_culprit(suite, e, a_who)}: the classifier of {on} failed: {_one_line(e)}.") from e
    seed_everything(0)
    try:
        attack = a.entry.build(classifier, eps, rejector=d.rejector, **a.params)
    except Exception as e:
        raise ConfigError(f"{suite.path}: {_culprit(suite, e, a_who)}: building it with params {a.params or {}} {on} "
                          f"raised {_one_line(e)}. Check its parameters ({CONTRACT}).") from e
    if not callable(getattr(attack, "generate", None)):
        raise ConfigError(f"{suite.path}: {a_who}: the factory returned {type(attack).__name__}, which has no "
                          f"generate(x, y) method ({CONTRACT}).")
    for small in _dry_budgets(a):  # the smallest budgets the factory takes, else the suite's (built above)
        try:
            attack = a.entry.build(classifier, eps, rejector=d.rejector, **small)
            break
        except Exception:
            continue
    _small_autoattack(attack)
    try:
        with classifier.memoized():
            x_adv = attack.generate(x, y=y)
    except Exception as e:
        raise ConfigError(f"{suite.path}: {_culprit(suite, e, a_who)}: generate {on} raised {_one_line(e)}.") from e
    problem = _bad_output(x_adv, x, eps, a)
    if problem:
        raise ConfigError(f"{suite.path}: {a_who}: generate {on} returned {problem}; the run would refuse it after "
                          f"training. An attack returns the adversarial images: numpy, the inputs' shape, in [0, 1]"
                          f"{', within eps' if a.entry.bounded else ''} ({CONTRACT}).")


def _dry_budgets(a: AttackSpec) -> list[dict]:
    """A built-in attack's params with the smallest budgets: those its `params` allow, then only
    those its factory is known to take (its registry defaults, its signature, the suite's params:
    ART's BasicIterativeMethod takes fewer than its `attack_params` list). Outside attacks: none."""
    if a.origin != BUILT_IN:
        return []
    sig = _signature(a.entry.factory)
    known = set(a.entry.defaults) | set(a.params) | (set(sig.parameters) if sig is not None else set())
    allowed = a.entry.allowed_params()
    tries = [known if allowed is None else set(allowed), known if allowed is None else allowed & known]
    out = []
    for keys in tries:
        small = {**a.params, **{k: v for k, v in DRY_BUDGETS.items() if k in keys}}
        if small != a.params and small not in out:
            out.append(small)
    return out


def _small_autoattack(attack) -> None:
    """Standard AutoAttack's members with tiny budgets (the dry run's only: a fresh object per cell)."""
    inner = getattr(attack, "attack", None) if type(attack).__name__ == "StandardAutoAttack" else None
    for member, budgets in AUTOATTACK_DRY.items():
        obj = getattr(inner, member, None)
        for k, v in budgets.items():
            if obj is not None and hasattr(obj, k):
                setattr(obj, k, min(getattr(obj, k), v))


def _bad_output(x_adv: Any, x: np.ndarray, eps: float, a: AttackSpec) -> str | None:
    if not isinstance(x_adv, np.ndarray):
        return f"a {type(x_adv).__name__}, not a numpy array"
    if x_adv.shape != x.shape:
        return f"an array of shape {x_adv.shape} for images of shape {x.shape}"
    if not np.issubdtype(x_adv.dtype, np.number) or np.issubdtype(x_adv.dtype, np.complexfloating):
        return f"an array of dtype {x_adv.dtype}"
    x_adv = x_adv.astype(np.float32)
    if not np.isfinite(x_adv).all():
        return "NaN or infinite values"
    if x_adv.min() < 0 or x_adv.max() > 1:
        return f"values outside [0, 1] ({x_adv.min():g} to {x_adv.max():g})"
    if a.entry.bounded:
        size = perturbation_norms(x_adv, x, a.entry.norm).max(initial=0.0)
        if size > eps * (1 + 1e-5) + 1e-6:
            return f"a perturbation of {a.entry.norm} size {size:.5f} > eps {eps:g}"
    return None


# ------------------------------------------------------------------------- errors during the run

def _frames(e: BaseException) -> list:
    frames, tb = [], e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _module_of(obj) -> tuple[str | None, str | None]:
    """(module name, top-level package unless it is a library) of a plugin's callable."""
    module = getattr(inspect.getmodule(obj), "__name__", None) or getattr(obj, "__module__", None)
    if not module:
        return None, None
    top = module.partition(".")[0]
    return module, (None if top in _LIBRARIES or top == module else top)


def _matches(frame, plugin: Plugin) -> bool:
    code = getattr(plugin.obj, "__code__", None)
    if code is not None and frame.f_code is code:
        return True
    module, package = _module_of(plugin.obj)
    name = frame.f_globals.get("__name__", "")
    return name == module or (package is not None and (name == package or name.startswith(package + ".")))


def blame(e: BaseException, *suites: Suite) -> str | None:
    """The suite key and plugin (`attacks[2] (my_pkg:make_attack)`) whose code `e`'s traceback
    passes through, or None (no outside code raised it). The first frame of outside code decides;
    where several plugins share its module, the plugin whose callable it is, else the kind of
    object the frame belongs to (a preprocessor: the defence; a torch module: the model; else
    the attack); the names of every candidate left."""
    plugins = [p for s in suites for p in outside(s) if not is_stand_in(p.obj)]
    if not plugins:
        return None
    for frame in _frames(e):
        hits = [p for p in plugins if _matches(frame, p)]
        if not hits:
            continue
        exact = [p for p in hits if getattr(p.obj, "__code__", None) is frame.f_code]
        if exact:
            hits = exact
        elif len(hits) > 1:
            owner = frame.f_locals.get("self")
            kind = "defence" if isinstance(owner, Preprocessor) else "model" if isinstance(owner, nn.Module) else "attack"
            hits = [p for p in hits if p.kind == kind] or hits
        return " or ".join(dict.fromkeys(p.who for p in hits))
    return None


@contextmanager
def plugin_errors(*suites: Suite) -> Iterator[None]:
    """Within the block, an exception raised inside a suite's outside code becomes a PluginFailure
    (exit 1) naming the suite key, the plugin and the exception; anything else passes unchanged."""
    try:
        yield
    except AttractorBenchError:
        raise
    except Exception as e:
        culprit = blame(e, *suites)
        if culprit is None:
            raise
        path = next((s.path for s in suites if any(p.who in culprit for p in outside(s))), suites[0].path)
        raise PluginFailure(f"{path}: {culprit} raised {_one_line(e)} during the run. The cells finished so far are "
                            "stored in the cache; fix the plugin and run the same command again to resume from them "
                            "(--debug shows the traceback).") from e


__all__ = ["Checked", "DRY_IMAGES", "EXTRAS", "StandIn", "blame", "check_suite", "outside", "plugin_errors", "untrained"]
