"""``editkit`` command line: argparse, one module per subcommand, torch imported lazily.

Each subcommand module ``editkit.cli.<name>`` defines ``add_parser(subparsers)`` and
``main(args) -> int``, or ``register(subparsers)`` when it adds several subcommands. Only the
chosen subcommand's ``main`` runs, so ``editkit --help`` and ``editkit plugins`` never import torch.

Exit codes: 0 success, 2 bad usage or bad input, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from editkit.plugins import PluginHost

SUBCOMMANDS = ("run", "plugins", "models", "inspect", "stats", "edits", "report", "trace")


def build_parser(*, warn: bool = False) -> argparse.ArgumentParser:
    """The full parser; with ``warn``, one line on stderr per plugin that failed to load or register."""
    from editkit import __version__

    parser = argparse.ArgumentParser(
        prog="editkit",
        description="Locate-then-edit knowledge editing with pluggable editors and constraints.",
    )
    parser.add_argument("--version", action="version", version=f"editkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"editkit.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == f"editkit.cli.{name}":
                continue
            raise
        if hasattr(module, "register"):
            module.register(sub)
            continue
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_main=module.main)
    parser.set_defaults(_plugin_host=_plugin_commands(sub, warn=warn))  # the command's one plugin host
    return parser


def _plugin_commands(sub: argparse._SubParsersAction, *, warn: bool) -> PluginHost:
    """Subcommands that plugins register through ``editkit_register_commands``; the host that found them."""
    from editkit.plugins import PluginHost

    host = PluginHost()
    if warn:
        for failure in host.failures:
            print(f"editkit: warning: {failure.describe()}", file=sys.stderr)
    for name, spec in sorted(host.catalog.entries["commands"].items()):
        if name in sub.choices:
            continue  # built-in commands win
        parser = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.add_arguments(parser)
        parser.set_defaults(_main=spec.main)
    return host


def main(argv: Sequence[str] | None = None) -> int:
    from editkit.errors import EditkitError
    from editkit.requests import printable

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(warn=argv[:1] != ["plugins"])  # `editkit plugins` lists failures itself
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        with _printable_warnings():
            return int(args._main(args) or 0)
    except EditkitError as exc:  # its message may quote request text: shown with control characters escaped
        print(f"editkit {args.command}: error: {printable(exc, lines=True)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        hint = getattr(exc, "hint", None)  # what to do next, where the command knows (editkit run: --resume)
        print(f"editkit {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


@contextlib.contextmanager
def _printable_warnings() -> Iterator[None]:
    """Warnings shown while a command runs have their message's control characters escaped (a warning may quote
    request text, e.g. a case id); what the warning carries is unchanged."""
    from editkit.requests import printable

    original = warnings.formatwarning

    def formatwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
        return original(printable(message, lines=True), category, filename, lineno, line)

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = original


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
