"""Options that only mean something together with another option.

argparse cannot tell a flag the user gave from its default, so such options
are declared with `default=None`, documented with their real default in the
help, and resolved here: given without the option they depend on, they are a
one-line error (rather than silently ignored); otherwise the missing ones get
their defaults.
"""

from keras_lowrank.cli.errors import CLIError


def resolve_dependent_options(args, requires, defaults):
    """Refuses options given without `requires`, then fills their defaults.

    Args:
        args: The parsed `argparse.Namespace` (modified in place).
        requires: The destination of the option they depend on, e.g.
            `"fine_tune"`; "given" means not `None`.
        defaults: Destination -> default value of the dependent options,
            declared in the parser with `default=None`.

    Raises:
        CLIError: Naming the options given without `--requires`.
    """
    given = [dest for dest in defaults if getattr(args, dest, None) is not None]
    if given and getattr(args, requires, None) is None:
        flags = ", ".join(_flag(dest) for dest in given)
        raise CLIError(
            f"{flags} {'is' if len(given) == 1 else 'are'} used only with "
            f"{_flag(requires)}, which was not given"
        )
    for dest, value in defaults.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    return args


def _flag(dest):
    return "--" + dest.replace("_", "-")
