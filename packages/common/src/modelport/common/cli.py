"""`modelport`: one CLI; each installed package adds its subcommands.

Subcommands come from the ``modelport.commands`` entry-point group, so the ncnn env
shows `convert`/`bench` but never imports tensorflow, and the rknn env shows `rknn`.
"""

from __future__ import annotations

import errno
import signal
import sys
from importlib.metadata import entry_points
from types import FrameType
from typing import Any, NoReturn

import click
from rich.markup import escape

from . import __version__
from .context import StepContext
from .errors import HardwareMissing, ModelportError
from .log import console

EPILOG = """\b
Environment: MODELPORT_ARTIFACTS (artifacts dir), MODELPORT_CONFIG (config file),
MODELPORT_MODEL / MODELPORT_LABELS (local model + labels for `fetch`),
MODELPORT_IMAGES / MODELPORT_CALIBRATION (eval / calibration images).
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="modelport.toml to use (default: ./modelport.toml, else built-in defaults).",
)
@click.option(
    "-a",
    "--artifacts",
    type=click.Path(file_okay=False),
    help="Artifacts directory (default: $MODELPORT_ARTIFACTS or ./artifacts).",
)
@click.option(
    "-o",
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config value, e.g. -o bench.runs=500 (repeatable).",
)
@click.option(
    "--image", "--images", "images", type=click.Path(), help="Eval image, directory or list file (overrides [images] eval)."
)
@click.option(
    "--calibration-dataset", type=click.Path(), help="Calibration image, directory or list file (overrides [images] calibration)."
)
@click.option("--labels", type=click.Path(dir_okay=False), help="Labels file for `fetch` (overrides [model] labels).")
@click.option("--force", is_flag=True, help="Redo every step even when its manifest says it is up to date.")
@click.version_option(__version__, prog_name="modelport")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    artifacts: str | None,
    overrides: tuple[str, ...],
    images: str | None,
    calibration_dataset: str | None,
    labels: str | None,
    force: bool,
) -> None:
    """Convert one image model, a classifier or a detector (TFLite, ONNX or Caffe), to every deployment
    toolchain and measure them the same way.

    Typical run (each step skips itself when its outputs are up to date):

    \b
      modelport init my_model.onnx --out modelport-my.toml   # a commented config, guesses marked
      modelport -c modelport-my.toml fetch
      modelport -c modelport-my.toml convert reference onnx onnx-int8
      modelport -c modelport-my.toml bench source onnx onnx-int8
      modelport -c modelport-my.toml report
    """
    sets: list[str | tuple[str, Any]] = list(overrides)
    for key, value in (("images.eval", images), ("images.calibration", calibration_dataset), ("model.labels", labels)):
        if value:
            sets.append((key, value))
    ctx.obj = StepContext(config_path=config_path, overrides=sets, artifacts=artifacts, force=force)


def _register() -> None:
    # A name two installed packages register (`analyze`: modelport-convert's for every analysis Target,
    # modelport-rknn's for rknn-int8 in its env) goes to the first by distribution name, whatever the install order.
    for ep in sorted(entry_points(group="modelport.commands"), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        if ep.name not in cli.commands:
            cli.add_command(ep.load(), ep.name)


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    # SIGTERM (docker stop, CI timeouts, kill) unwinds like Ctrl-C, so artifact jobs delete their temp files.
    raise KeyboardInterrupt(f"signal {signum}")


_GLOBAL_VALUE_OPTS = {
    "-c",
    "--config",
    "-a",
    "--artifacts",
    "-o",
    "--set",
    "--image",
    "--images",
    "--calibration-dataset",
    "--labels",
}


def hoist_overrides(argv: list[str]) -> list[str]:
    """Move ``-o``/``--set`` given after the subcommand to before it (`modelport bench onnx -o bench.runs=5`).

    No subcommand has a ``-o`` of its own, so the override means the same wherever it is written.
    """
    i = 0
    while i < len(argv) and argv[i] not in cli.commands:
        if argv[i] == "--":
            return argv
        i += 2 if argv[i] in _GLOBAL_VALUE_OPTS else 1
    head, hoisted, rest = argv[:i], [], []
    tail = iter(argv[i:])
    for tok in tail:
        if tok == "--":
            rest += [tok, *tail]
            break
        if tok in ("-o", "--set"):
            value = next(tail, None)
            hoisted += [tok] + ([value] if value is not None else [])
        elif tok.startswith("--set=") or (tok.startswith("-o") and len(tok) > 2):
            hoisted.append(tok)
        else:
            rest.append(tok)
    return head + hoisted + rest


def _os_error(e: OSError) -> str:
    """An OS error as one line: what failed, on which file, and what to do."""
    what = {
        errno.ENOSPC: "no space left on the device (free some, or point -a / MODELPORT_ARTIFACTS elsewhere)",
        errno.EDQUOT: "disk quota exceeded (free some, or point -a / MODELPORT_ARTIFACTS elsewhere)",
        errno.EROFS: "read-only file system (point -a / MODELPORT_ARTIFACTS at a writable folder)",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a file is where a folder is expected",
        errno.EISDIR: "a folder is where a file is expected",
        errno.ENOENT: "no such file or folder",
    }.get(e.errno or 0, e.strerror or type(e).__name__)
    names = [str(n) for n in (e.filename, e.filename2) if n]
    return f"{' -> '.join(names)}: {what}" if names else what


def main(argv: list[str] | None = None) -> int:
    _register()
    signal.signal(signal.SIGTERM, _terminate)
    argv = hoist_overrides(list(sys.argv[1:] if argv is None else argv))
    try:
        cli.main(args=argv, prog_name="modelport", standalone_mode=False)
    except HardwareMissing as e:
        console.print(f"[yellow]skipped:[/] {escape(str(e))}")
        return 0
    except ModelportError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        console.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except MemoryError:
        console.print(
            "[red]error:[/] out of memory (lower [images] calibration_limit or "
            "[quantization] histogram_calibration_limit, or free memory)",
            soft_wrap=True,
        )
        return 1
    except OSError as e:
        console.print(f"[red]error:[/] {escape(_os_error(e))}", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
