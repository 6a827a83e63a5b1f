"""The `maasctl` command line: a thin layer that parses, calls the library, renders.

This package is imported on every command, so it must stay light: TensorFlow, uvicorn and other heavy
modules are imported only inside the command bodies that need them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Annotated, Any

import typer

from maasctl import __version__
from maasctl.cli._click import exceptions as click
from maasctl.cli._options import AppState, DebugOpt, StoreOpt, with_global_options
from maasctl.errors import NO_SPACE, MaasError

app = typer.Typer(
    name="maasctl",
    help="Model lifecycle for TensorFlow: train, package, register, serve and predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"maasctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: StoreOpt = None,
    debug: DebugOpt = False,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Model lifecycle for TensorFlow: train, package, register, serve and predict.

    Exit codes: 0 ok, 1 operation failed, 2 usage error or invalid input, 3 not found.
    --store and --debug may also follow the command (maasctl list --store DIR).
    """
    ctx.obj = AppState(store, debug)


def _load_commands() -> None:
    from maasctl.cli import (
        completion,
        deploy,
        package,
        predict,
        registry,
        runs_view,
        serve,
        signing,
        train,
        transfer,
        ui,
    )

    for module in (train, package, registry, transfer, signing, serve, predict, deploy, ui, completion):
        module.attach(app)
    runs_view.attach(train.runs_app)
    _accept_global_options_late(app)


def _accept_global_options_late(typer_app: typer.Typer) -> None:
    """Every command, in groups too, also takes --store/--debug after its name (cli/_options.py)."""
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = with_global_options(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _accept_global_options_late(group.typer_instance)


_load_commands()
_command: Any = None


def command() -> Any:
    """The click command behind `app`, built once, with help for people (cli/_help.py)."""
    global _command
    if _command is None:
        from typer.main import get_command

        from maasctl.cli._help import polish

        _command = polish(get_command(app))
    return _command


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("MAASCTL_DEBUG", "").lower() in ("1", "true", "yes")


def _empty_store(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a == "--":
            return False
        if a == "--store=" or (a == "--store" and i + 1 < len(args) and not args[i + 1].strip()):
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where errors become `Error: ...` lines and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = _debug_requested(args)
    if _empty_store(args):  # click turns '' into Path('.'): the current directory would become a store
        print("Error: --store: the store path is empty (give a directory, or leave --store out for "
              "$MAASCTL_HOME or ~/.maasctl)", file=sys.stderr)
        sys.exit(2)
    try:
        rv = command().main(args=args, prog_name="maasctl", standalone_mode=False)
        code: int | str | None = rv if isinstance(rv, int) else 0
        if code == 130:  # typer turns KeyboardInterrupt into Exit(130) before we see it
            print("Error: interrupted", file=sys.stderr)
    except SystemExit as exc:
        # typer exits by itself (code 1) when stdout is a closed pipe (`maasctl ... | head`); the reader
        # chose to stop reading, which is not a failure of ours, so pipefail scripts keep working
        ctx = exc.__context__
        code = 0 if isinstance(ctx, OSError) and ctx.errno == errno.EPIPE else exc.code
    except MaasError as exc:
        if debug:
            import traceback
            traceback.print_exc()
        print(f"Error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except click.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        code = 2
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        print(f"Error: {exc.format_message()}{hint}", file=sys.stderr)
        code = 2
    except click.ClickException as exc:
        print(f"Error: {exc.format_message()}", file=sys.stderr)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("Error: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout until the process exits
        except OSError:
            pass
    except OSError as exc:  # the environment failed us (full disk, a path under a regular file...): name the path
        if debug:
            import traceback
            traceback.print_exc()
        # shutil's copies name the source first and the file they could not write second
        path = exc.filename2 if exc.errno in NO_SPACE and exc.filename2 else exc.filename
        where = f"{path}: " if path else ""
        print(f"Error: {where}{exc.strerror or exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # noqa: BLE001 - the crash boundary: never a traceback unless asked for
        if debug:
            import traceback
            traceback.print_exc()
        print(f"Error: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)


def entry() -> None:
    """The `maasctl` program (console script and `python -m maasctl`): `main`, then, once TensorFlow is loaded,
    an exit that skips the interpreter's teardown. Tearing down TensorFlow's modules and objects costs about
    3 s on every train/serve/predict exit and has nothing left to do: exit handlers still run, streams are
    flushed. In-process callers (tests) use `main`, which only raises SystemExit."""
    try:
        main()
    except SystemExit as exc:
        if "tensorflow" not in sys.modules:
            raise
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
        import atexit

        atexit._run_exitfuncs()  # logging's flush, thread pools, ...: what a normal exit runs first
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
