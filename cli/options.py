"""Click options shared by several commands."""

from __future__ import annotations

import click

from nacvae.presets import DEFAULT_DATA

DATA_HELP = ("Dataset: digits (bundled), fashion-mnist, cifar10, imagenet, flickr25k (both under --data-dir), "
             "folder:PATH (a folder of images) or webdataset:URL_PATTERN (tar shards).")
DATA_DIR_HELP = "Where datasets live (default: $NACVAE_DATA_DIR or ~/.cache/nacvae/data)."


def data_options(default: str | None = DEFAULT_DATA, data_help: str = DATA_HELP, dir_help: str = DATA_DIR_HELP):
    """``--data``, ``--data-dir`` and ``--download/--no-download``, in that order."""
    options = [
        click.option("--data", default=default, show_default=default is not None, help=data_help),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=dir_help),
        click.option("--download/--no-download", default=True, show_default=True,
                     help="Download CIFAR-10 / Fashion-MNIST into --data-dir when they are missing."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def check_resume(out, kind: str, options: dict, parameter: dict | None = None) -> None:
    """The options typed on the command line beside --resume must agree with the run's
    saved settings (``parameter`` maps a setting to its click parameter where they differ)."""
    from pathlib import Path

    from nacvae import distributed
    from nacvae.runs import check_run_dir, read_run_config
    from nacvae.train.config import check_resume_options

    typed = typed_options(options, parameter)
    given = {k: v for k, v in options.items() if k in typed}
    # Under torchrun only rank 0 locks the folder; the others must not mistake its lock for a rival's.
    check_run_dir(Path(out), resume=True, locked=not distributed.is_main())
    check_resume_options(out, read_run_config(Path(out), kind, resuming=True)[kind], given)


THREADS_HELP = ("CPU threads for torch, OpenMP and numba: a number, or auto, the cores this process may use that "
                "other work leaves free [$NACVAE_THREADS, else $OMP_NUM_THREADS, else auto] (docs/scaling.md).")


def _apply_threads(ctx: click.Context, param: click.Parameter, value):
    if ctx.resilient_parsing:  # shell completion: decide nothing
        return None
    from nacvae.threads import configure_threads

    configure_threads(value)
    return None


def threads_option() -> click.Option:
    """``--threads``: decided while the options are parsed, so before any command imports
    torch (whose OpenMP runtime reads its wait policy once, when it starts)."""
    return click.Option(["--threads"], metavar="N|auto", default=None, expose_value=False,
                        callback=_apply_threads, help=THREADS_HELP)


def add_threads_option(command: click.Command) -> None:
    """Gives ``command`` (and every command of a group) the ``--threads`` option."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_threads_option(sub)
    elif not any(p.name == "threads" for p in command.params):
        command.params.append(threads_option())


def _method_option(name: str, owners):
    """One flag for an option that one or more methods declare (``nacvae.registry``)."""
    from nacvae import presets

    first = owners[0][1]
    helps = {o.help.rstrip(".") for _, o in owners}
    if len(helps) == 1:
        text = f"{first.help.rstrip('.')} ({', '.join(m for m, _ in owners)})"
    else:
        text = "; ".join(f"{m}: {o.help.rstrip('.')}" for m, o in owners)
    if first.preset:
        text += f" [dataset preset: {presets.help_values(name)}]"
    elif any(o.default is not None for _, o in owners):
        text += " [" + ", ".join(f"{m} {o.default}" for m, o in owners if o.default is not None) + "]"
    types = {"real": float, "int": int, "path": click.Path(dir_okay=True)}
    if first.kind == "flag":
        return click.option(f"{first.flag}/--no-{first.flag[2:]}", name, default=None, help=text + ".")
    return click.option(first.flag, name, type=types[first.kind], default=None, help=text + ".")


def method_options():
    """Every method's own options (``--flip-prob``, ``--temperature``, ``--teacher``...), one
    flag per name, read from the registry: a new method's options appear here by themselves."""
    from nacvae import registry

    def decorate(command):
        for name, owners in reversed(registry.all_options().items()):
            command = _method_option(name, owners)(command)
        return command

    return decorate


class _Fractions(click.ParamType):
    """A comma-separated list of numbers (``--lr-drops 0.5,0.75``), as a tuple; empty for none."""

    name = "fractions"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(float(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers.", param, ctx)


FRACTIONS = _Fractions()


def shown(cls, name: str) -> str:
    """``[value]``, the default a run gets, read from the configuration class that sets it."""
    import dataclasses

    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f"[{field.default:g}]" if isinstance(field.default, float) else f"[{field.default}]"


CONFIG_HELP = ("A TOML file of settings, or a run's config.json (or its folder) to repeat that run; options typed "
               "beside it win (docs/guide.md#configuration-files).")


def with_config_file(path, kind: str, options: dict, parameter: dict | None = None) -> dict:
    """``options`` with the settings of ``--config`` in place of those not typed (click's
    ParameterSource says which were); ``parameter`` maps a setting to its click parameter."""
    from nacvae.train.config_file import settings_with_file

    return settings_with_file(path, kind, options, typed_options(options, parameter))


def typed_options(options: dict, parameter: dict | None = None) -> set[str]:
    """The settings of ``options`` given on the command line (or in the environment), not left
    at their defaults; ``parameter`` maps a setting to its click parameter where they differ."""
    ctx = click.get_current_context()
    parameter = parameter or {}
    defaults = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP, None)
    return {n for n in options if ctx.get_parameter_source(parameter.get(n, n)) not in defaults}
