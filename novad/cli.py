"""``novad``: the command that runs the daemon in the foreground.

Exit codes: 0 after a clean stop; 1 when the daemon failed while running; 2 for a bad
setting or flag; 3 when it never became ready (another daemon owns the state dir or the
socket, the model or store cannot be opened).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click

from novad import __version__
from novad.config import LOG_LEVELS, WATCH_MODES, Config, load_config
from novad.errors import ConfigError, NovaError
from novad.lifecycle import EXIT_CONFIG, EXIT_NOT_READY


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--source", type=click.Path(path_type=Path), help="Folder of notes to index.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Where the store, manifest and metrics live. "
    "[default: $XDG_STATE_HOME/nova; /var/lib/nova as root]",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    help="Unix socket to serve on. "
    "[default: $XDG_RUNTIME_DIR/nova/novad.sock; /run/nova/novad.sock as root]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML config file. [default: ~/.config/nova/novad.toml if present]",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Log verbosity. [default: info]")
@click.option(
    "--debounce-ms", type=int, help="Quiet time before changes are indexed. [default: 300]"
)
@click.option(
    "--max-wait-ms", type=int, help="Longest a change waits while events keep coming. [5000]"
)
@click.option(
    "--watch-mode",
    type=click.Choice(WATCH_MODES),
    help="auto: native events, polling if they cannot be had; polling: always poll. [auto]",
)
@click.option("--poll-interval-ms", type=int, help="How often polling looks. [default: 1000]")
@click.option(
    "--rescan-interval-s",
    type=float,
    help="Safety rescan (a stat per note) every N seconds; 0 turns it off. [default: 900]",
)
@click.option("--embed-threads", type=int, help="Threads the embedding model may use.")
@click.version_option(__version__, prog_name="novad")
def main(**flags: object) -> None:
    """Keep a semantic index of a notes folder current, and serve it on a Unix socket."""
    try:
        config = load_config(flags)
    except ConfigError as exc:
        click.echo(f"novad: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging(config.log_level)
    sys.exit(run(config))


def run(config: Config) -> int:
    """Run the daemon until it is stopped; return the process exit code."""
    from novad.daemon import Daemon

    try:
        return asyncio.run(Daemon(config).run())
    except NovaError as exc:
        logging.getLogger("novad").error("%s", exc)
        return EXIT_NOT_READY


def setup_logging(level: str) -> None:
    """Log to stderr; under systemd (JOURNAL_STREAM) journald adds the time itself."""
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    chosen = logging.getLevelName(level.upper())
    # Libraries (markdown-it, chromadb, transformers...) stay at WARNING even in debug mode:
    # their per-token detail drowns Nova's. The level applies to Nova's own loggers.
    logging.basicConfig(level=max(chosen, logging.WARNING), format=fmt, stream=sys.stderr)
    logging.getLogger("novad").setLevel(chosen)
    # Progress bars of the model loader would garble the log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
