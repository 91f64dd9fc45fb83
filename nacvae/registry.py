"""The method registry: what each pretraining method is, read without running it.

A method is one module of ``nacvae/methods/`` that assigns ``SPEC = MethodSpec(...)``: its
name, its own options with their defaults and checks, whether it can read a streamed dataset,
its projection head and whether its encoder has a prediction head, and its recipe (the
training settings it sets over the dataset's preset). The command line, the configuration,
``vae --init``, the studies and the docs all read this registry, so a method is named once.

The specs are read from the modules' source (the ``SPEC`` assignment is a literal) rather than
by importing them: method modules import torch, and ``--help`` and the thread set-up must run
before torch starts. ``tests/test_registry.py`` checks that the source and the imported
module agree.
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nacvae.checks import check_flag, check_int, check_real
from nacvae.errors import ConfigError

METHODS_DIR = Path(__file__).with_name("methods")
# Folders of a user's own method modules, separated by os.pathsep (docs/guide.md, "Adding an objective").
USER_METHODS = "NACVAE_METHODS"
KINDS = ("real", "int", "flag", "path")
# Training settings a method's recipe may set over the dataset's preset.
RECIPE_KEYS = ("optimizer", "lr", "weight_decay", "warmup_steps", "warmup_epochs", "code_dim", "batch_size",
               "schedule", "lr_drops")
# How a run's settings are chosen: each method's own recipe (its SPEC: recipe, head, start,
# views, binarisation), or NAC's shared one for every method (an ablation).
RECIPES = ("own", "shared")
STARTS = ("random", "teacher", "frozen-teacher")
BINARISATIONS = {"sign": "sgn(a)", "sigmoid-mean": "sigmoid(a) > its mean over the training images"}


@dataclass(frozen=True)
class Option:
    """One option of a method: ``--name`` on the command line, ``name`` in config.json."""

    name: str
    default: Any = None
    kind: str = "real"          # real | int | flag | path
    help: str = ""
    low: float = -math.inf      # real: the allowed interval
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    least: int = 0              # int: the smallest allowed value
    optional: bool = False      # None is a meaningful value (the help says what it means)
    required: bool = False      # a run of this method needs a value
    preset: bool = False        # the dataset's preset gives the default (e.g. a queue length)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        name = self.flag[2:]
        if value is None and (self.optional or self.kind == "path"):
            return
        if self.kind == "real":
            check_real(name, value, self.low, self.high, self.low_open, self.high_open)
        elif self.kind == "int":
            check_int(name, value, self.least)
        elif self.kind == "flag":
            check_flag(name, value)
        elif not isinstance(value, str) or not value:
            raise ConfigError(f"{self.flag} must be a path, got {value!r}.")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str                                 # one line for --help and the docs
    options: tuple[Option, ...] = ()
    streams: bool = True                         # needs nothing of the dataset but its batches
    predictor: bool = False                      # the encoder has NAC's prediction head
    head: str = "mlp"                            # projection head: mlp (sqrt(D)-scaled, two layers) or linear
    head_std: float | None = None                # linear head: weights N(0, std^2) and bias 0 (None: PyTorch's init)
    recipe: dict[str, Any] = field(default_factory=dict)  # training settings over the preset
    start: str = "random"                        # random | teacher (its backbone, trained) | frozen-teacher
    views: int = 2                               # augmented views of each image per step (1 or 2)
    binarisation: str = "sign"                   # how codes are read from a (BINARISATIONS)
    reference: str = ""                          # the paper
    order: int = 100                             # place in lists (the paper's order)
    group: str = "baseline"                      # main: the studies train VAEs from it; baseline: evaluated

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)


def _evaluate(node: ast.AST) -> Any:
    """A literal, a quotient of two literal numbers (a recipe's 25_000 / 55_000), or a call of
    MethodSpec / Option / dict with literal arguments."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _evaluate(node.left) / _evaluate(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONSTRUCTORS:
        return _CONSTRUCTORS[node.func.id](*map(_evaluate, node.args),
                                           **{k.arg: _evaluate(k.value) for k in node.keywords})
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        return {_evaluate(k): _evaluate(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


_CONSTRUCTORS = {"MethodSpec": MethodSpec, "Option": Option, "dict": dict}


def read_spec(path: Path) -> MethodSpec | None:
    """The ``SPEC`` a method module assigns, or None for a module that is not a method."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SPEC" for t in node.targets):
                return _evaluate(node.value)
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise ConfigError(f"The method module {path} cannot be read: its SPEC must be a MethodSpec(...) of "
                          f"literal values ({type(exc).__name__}: {exc}).") from None
    return None


def method_dirs() -> tuple[Path, ...]:
    """The package's methods, then the folders ``$NACVAE_METHODS`` names."""
    extra = [Path(p) for p in os.environ.get(USER_METHODS, "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            raise ConfigError(f"${USER_METHODS} names {folder}, which is not a folder of method modules.")
    return (METHODS_DIR, *extra)


def _specs() -> dict[str, tuple[MethodSpec, Path]]:
    return _read_all(method_dirs())


@lru_cache(maxsize=None)
def _read_all(folders: tuple[Path, ...]) -> dict[str, tuple[MethodSpec, Path]]:
    found: dict[str, tuple[MethodSpec, Path]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            spec = read_spec(path)
            if spec is None:
                continue
            _check_spec(spec, path)
            if spec.name in found:
                raise ConfigError(f"Two method modules register '{spec.name}': {found[spec.name][1]} and {path}.")
            found[spec.name] = (spec, path)
    return found


def _check_spec(spec: MethodSpec, path: Path) -> None:
    problem = None
    if not set(spec.recipe) <= set(RECIPE_KEYS):
        problem = f"its recipe may set only {', '.join(RECIPE_KEYS)}"
    elif spec.head not in ("mlp", "linear"):
        problem = "its head must be mlp or linear"
    elif spec.start not in STARTS:
        problem = f"its start must be one of {', '.join(STARTS)}"
    elif spec.views not in (1, 2):
        problem = "its views must be 1 or 2"
    elif spec.binarisation not in BINARISATIONS:
        problem = f"its binarisation must be one of {', '.join(BINARISATIONS)}"
    elif spec.group not in ("main", "baseline"):
        problem = "its group must be main or baseline"
    elif len(set(spec.option_names)) != len(spec.options):
        problem = "an option is declared twice"
    elif any(o.kind not in KINDS for o in spec.options):
        problem = f"an option's kind must be one of {', '.join(KINDS)}"
    if problem:
        raise ConfigError(f"The method '{spec.name}' in {path} is malformed: {problem}.")
    for option in spec.options:
        if option.default is not None:
            option.check(option.default)


def names() -> tuple[str, ...]:
    """Every method's name, in the paper's order (NAC, its two main baselines, the others)."""
    return tuple(sorted(_specs(), key=lambda n: (_specs()[n][0].order, n)))


def spec(name: str) -> MethodSpec:
    try:
        return _specs()[name][0]
    except KeyError:
        raise ConfigError(f"Unknown objective '{name}'; choose one of {', '.join(names())}.") from None


def source(name: str) -> Path:
    """The file of the module that implements method ``name``."""
    spec(name)
    return _specs()[name][1]


def module_name(name: str) -> str | None:
    """The importable name of method ``name``'s module; None for a user's module outside the package."""
    path = source(name)
    return f"nacvae.methods.{path.stem}" if path.parent == METHODS_DIR else None


def all_options() -> dict[str, list[tuple[str, Option]]]:
    """Every option name, with the methods that have it: one CLI flag each."""
    merged: dict[str, list[tuple[str, Option]]] = {}
    for name in names():
        for option in spec(name).options:
            merged.setdefault(option.name, []).append((name, option))
    return merged


def methods_with(option: str) -> tuple[str, ...]:
    return tuple(m for m, _ in all_options().get(option, ()))


def group(name: str) -> tuple[str, ...]:
    """The methods of a group: ``main`` (NAC and its two main baselines) or ``baseline``."""
    return tuple(n for n in names() if spec(n).group == name)


def teacher_methods(required: bool | None = None) -> tuple[str, ...]:
    """The methods that take --teacher (with ``required`` True / False: that need / may take one)."""
    return tuple(m for m, o in all_options().get("teacher", ()) if required is None or o.required == required)


def recipe_of(name: str, recipe: str = "own") -> dict[str, Any]:
    """The training settings method ``name`` sets over the dataset's preset: its own recipe's,
    or none under the shared recipe."""
    check_recipe(recipe)
    return dict(spec(name).recipe) if recipe == "own" else {}


def check_recipe(recipe: Any) -> None:
    if recipe not in RECIPES:
        raise ConfigError(f"Unknown --recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")


def settings_for(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less the options of other methods: a study's settings for all its methods
    (a flip probability, a queue length), as they apply to method ``name``."""
    others = set(all_options()) - set(spec(name).option_names)
    return {k: v for k, v in settings.items() if k not in others}


def resolve_options(name: str, preset: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Method ``name``'s options: its defaults, then the dataset preset's, then ``given``.

    An option of another method is refused: it would be silently ignored."""
    method = spec(name)
    for key in given:
        if method.option(key) is None:
            owners = methods_with(key)
            raise ConfigError(f"--{key.replace('_', '-')} is an option of --objective {_and(owners)}, not {name}.")
    values = {}
    for option in method.options:
        value = option.default
        if option.preset and option.name in preset:
            value = preset[option.name]
        values[option.name] = given.get(option.name, value)
    check_options(name, values)
    return values


def check_options(name: str, values: dict[str, Any]) -> None:
    method = spec(name)
    unknown = set(values) - set(method.option_names)
    if unknown:
        raise ConfigError(f"--{sorted(unknown)[0].replace('_', '-')} is not an option of --objective {name}.")
    for option in method.options:
        value = values.get(option.name)
        if option.required and not value:
            raise ConfigError(f"--objective {name} needs {option.flag}: {option.help[0].lower() + option.help[1:]}")
        option.check(value)


def _and(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
