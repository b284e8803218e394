"""The ``crossmatch`` command: one click group, one module per command group.

Errors are caught once, here: a :class:`protocol.errors.CrossmatchError` prints
its one-line diagnostics and exits with its code; anything else prints one line
and exits 1. ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from node.ops.allocator import return_large_buffers
from protocol.errors import EXIT_CODES, CrossmatchError

# Each module exposes ``register(group)``; adding a command group is one line here.
COMMAND_MODULES = (
    "node.cli.ca",
    "node.cli.keys",
    "node.cli.nodes",
    "node.cli.data",
    "node.cli.results",
    "node.cli.rounds",
    "node.cli.audit",
    "node.cli.audit_compare",
    "node.cli.disclosure",
    "node.cli.demo",
    "node.cli.policy",
    "node.cli.status",
    "node.cli.act",
    "node.cli.consortium",
    "node.cli.ui",
    "node.cli.cases",
    "node.cli.warninglist",
)


def _exit_code_help() -> str:
    return "\n".join(f"  {code:>3}  {text}" for code, text in sorted(EXIT_CODES.items()))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nExit codes:\n" + _exit_code_help(),
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="crossmatch")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """crossmatch: private set intersection of abuse signals between AI labs."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main(argv: list[str] | None = None) -> int:
    return_large_buffers()  # before any thread or buffer: see node/ops/allocator.py
    verbose = "--verbose" in (argv or sys.argv[1:]) or "-v" in (argv or sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="crossmatch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("crossmatch: aborted", err=True)
        return 1
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2 if isinstance(e, click.UsageError) else e.exit_code
    except CrossmatchError as e:
        if verbose:
            traceback.print_exc()
        click.echo(f"crossmatch: error: {e.diagnostics()}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("crossmatch: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns surprises into one line
        if verbose:
            traceback.print_exc()
        click.echo(f"crossmatch: error: unexpected {type(e).__name__}: {e}", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
