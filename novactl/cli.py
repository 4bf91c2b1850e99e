"""novactl, the command-line client of novad.

Each command is one small function: build the request, make one call through
``novactl.client.Client``, then either print the raw result as JSON (``--json``, stdout
only, nothing else) or hand it to ``novactl.render``. Expected failures never end in a
traceback: ``_Reporting`` turns each client error into one red line on stderr and the exit
code documented in ``HELP``, in a single place.

Idle timeouts: ``--timeout`` bounds the connect and each wait for the daemon's next message.
``wait`` extends it by its own timeout; ``rebuild`` lifts it, since the daemon streams
progress while it works and a single large note can take a while to embed (Ctrl-C stops
following the pass).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from novactl import render
from novactl.client import (
    BadReply,
    Client,
    DaemonError,
    EventHandler,
    NotRunning,
    SocketPathTooLong,
)
from novad import __version__
from novad.paths import default_socket_path
from novad.protocol import (
    BAD_ARGS,
    BAD_MSGPACK,
    BAD_REQUEST,
    BUSY,
    INTERNAL,
    MAX_K,
    MAX_QUERY_CHARS,
    NOT_READY,
    PASS_FAILED,
    SHUTTING_DOWN,
    TIMEOUT,
    TOO_LARGE,
    UNKNOWN_OP,
    UNSUPPORTED_VERSION,
)

EXIT_DAEMON_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3
EXIT_INTERRUPTED = 130
# How often `wait` knocks again on a daemon that is still starting.
_START_POLL_S = 0.25
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WAIT_S = 60.0
DEFAULT_HITS = 10

HELP = """Talk to novad, the daemon that keeps a semantic index of a notes folder current.

Every command takes --json, which prints the daemon's raw result as JSON on stdout and
nothing else.

\b
Exit codes:
  0    success
  1    the daemon answered with an error, its pass did not end ok (failed,
       skipped or cancelled), or you said no
  2    usage error, including rebuild --full with no terminal and no --force
  3    no daemon reachable: socket missing, stale, forbidden or not answering,
       or its path too long for a Unix socket
  130  interrupted (Ctrl-C)
"""

_MISMATCH = f"The daemon may be a different version from novactl {__version__}; see `novactl ping`."
_BUG = "This looks like a bug in novactl or novad; please report it with this message."
_HINTS = {
    NOT_READY: "The daemon is still starting; retry in a moment, or run `novactl wait` first.",
    TIMEOUT: "Run `novactl status` to see what the daemon is working on.",
    INTERNAL: "The daemon's log has the details.",
    PASS_FAILED: "`novactl stats` lists recent passes; the daemon's log has the details.",
    BUSY: "The daemon has too many clients connected; retry in a moment.",
    SHUTTING_DOWN: "The daemon is stopping; start it again and retry.",
    TOO_LARGE: "The request is over the daemon's size limit; shorten it.",
    UNKNOWN_OP: _MISMATCH,
    UNSUPPORTED_VERSION: _MISMATCH,
    BAD_ARGS: _BUG,
    BAD_REQUEST: _BUG,
    BAD_MSGPACK: _BUG,
}

F = TypeVar("F", bound=Callable[..., Any])
MAX_SECONDS = 7 * 24 * 3600.0


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse NaN, which slips through FloatRange's comparisons."""
    if not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds")
    return value


@dataclass(frozen=True)
class Session:
    """What every command needs: the client and the two consoles."""

    client: Client
    out: Console
    err: Console


def _fail(session: Session, message: str, exit_code: int) -> NoReturn:
    """Print ``message`` in red on stderr and leave with ``exit_code``."""
    session.err.print(render.error_text(message), soft_wrap=True)
    raise click.exceptions.Exit(exit_code)


def _daemon_error_message(op: str, exc: DaemonError) -> str:
    """Describe an error reply: what failed, the daemon's reason, and what to do."""
    hint = _HINTS.get(exc.code, "")
    return f"`{op}` failed: {exc.message} [{exc.code}]. {hint}".rstrip()


class _Reporting:
    """Turn client errors and Ctrl-C raised inside the block into a message and exit code."""

    def __init__(self, session: Session, op: str) -> None:
        self._session = session
        self._op = op

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, NotRunning):
            _fail(self._session, str(exc), EXIT_NO_DAEMON)
        if isinstance(exc, DaemonError):
            _fail(self._session, _daemon_error_message(self._op, exc), EXIT_DAEMON_ERROR)
        if isinstance(exc, BadReply):
            _fail(self._session, f"{exc}. {_MISMATCH}", EXIT_DAEMON_ERROR)
        if isinstance(exc, KeyboardInterrupt):
            message = f"interrupted while waiting for `{self._op}`; see `novactl status`."
            _fail(self._session, message, EXIT_INTERRUPTED)


def _call(
    session: Session,
    op: str,
    args: dict[str, Any] | None = None,
    on_event: EventHandler | None = None,
    read_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Make one call, reporting any failure and exiting with its code."""
    with _Reporting(session, op):
        return session.client.call(op, args, on_event, read_timeout_s=read_timeout_s)


def _wait_through_start(client: Client, wait_s: float) -> dict[str, Any]:
    """Ask for ``wait``, retrying while the daemon starts, all within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    left = wait_s
    while True:
        try:
            return client.call("wait", {"timeout_s": left}, read_timeout_s=left + client.timeout_s)
        except (NotRunning, DaemonError) as exc:
            if not _may_be_starting(exc) or time.monotonic() + _START_POLL_S >= deadline:
                raise
        time.sleep(_START_POLL_S)
        left = max(deadline - time.monotonic(), 0.001)


def _may_be_starting(exc: NotRunning | DaemonError) -> bool:
    """Whether ``exc`` may come from a daemon that is still starting, so a retry can help."""
    if isinstance(exc, DaemonError):
        return exc.code == NOT_READY
    return not isinstance(exc, SocketPathTooLong)


def _print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout, and nothing else."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _stdin_is_tty() -> bool:
    """Whether a person can answer a prompt on stdin."""
    return sys.stdin is not None and sys.stdin.isatty()


def json_option(command: F) -> F:
    """Add the ``--json`` flag every command shares."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the daemon's raw result as JSON on stdout and nothing else.",
    )(command)


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--socket",
    "socket_path",
    # No readability check here: a forbidden socket is reported by the client (exit 3).
    type=click.Path(dir_okay=False, readable=False, path_type=Path),
    envvar="NOVA_SOCKET",
    default=default_socket_path,
    show_default="$NOVA_SOCKET, else novad.sock in the runtime dir",
    help="The daemon's Unix socket.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, max=MAX_SECONDS, min_open=True),
    callback=_finite,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the daemon to accept the connection and to answer.",
)
@click.version_option(__version__, prog_name="novactl")
@click.pass_context
def main(ctx: click.Context, socket_path: Path, timeout_s: float) -> None:
    """Open a session on the daemon's socket for the subcommand."""
    client = ctx.with_resource(Client(socket_path, timeout_s))
    ctx.obj = Session(client, Console(highlight=False), Console(stderr=True, highlight=False))


@main.command()
@json_option
@click.pass_obj
def ping(session: Session, as_json: bool) -> None:
    """Check that the daemon answers, and print its version."""
    result = _call(session, "ping")
    if as_json:
        _print_json(result)
        return
    line = f"novad {result.get('version')} (pid {result.get('pid')})"
    session.out.print(line, markup=False)


@main.command()
@json_option
@click.pass_obj
def status(session: Session, as_json: bool) -> None:
    """Show the daemon's state, its source folder, index counts and passes."""
    result = _call(session, "status")
    if as_json:
        _print_json(result)
        return
    session.out.print(render.status_table(result))


@main.command()
@json_option
@click.pass_obj
def stats(session: Session, as_json: bool) -> None:
    """Show store, pass, embedder and resource figures, skipped notes and recent passes."""
    result = _call(session, "stats")
    if as_json:
        _print_json(result)
        return
    session.out.print(render.stats_view(result))


@main.command()
@click.option("--full", is_flag=True, help="Re-embed every note into a new generation.")
@click.option("--force", is_flag=True, help="Do not ask before a --full rebuild.")
@click.option(
    "--dry-run", is_flag=True, help="Print what the pass would do and how long, without doing it."
)
@json_option
@click.pass_obj
def rebuild(session: Session, full: bool, force: bool, dry_run: bool, as_json: bool) -> None:
    """Run an indexing pass now and follow its progress.

    Without --full the pass indexes only what changed. With --full every note is embedded
    again into a new generation; searches keep using the current one until it is done.
    If a pass is already running, the answer says whether this request joined it or waits
    for it. Exits 1 if the pass does not end ok: failed, cancelled, or skipped (a source
    folder that is missing, unreadable or suddenly empty).
    """
    if dry_run:
        plan = _call(session, "rebuild", {"full": full, "dry_run": True})
        if as_json:
            _print_json(plan)
        else:
            session.out.print(render.plan_view(plan))
        return
    if full and not force:
        _confirm_full(session)
    args = {"full": full}
    if as_json:
        result = _call(session, "rebuild", args, read_timeout_s=math.inf)
        _print_json(result)
    else:
        result = _follow_rebuild(session, args)
        _print_rebuild_summary(session, result)
    _check_outcome(session, result)


def _confirm_full(session: Session) -> None:
    """Ask before a full rebuild; refuse when nobody can answer."""
    if not _stdin_is_tty():
        message = (
            "rebuild --full re-embeds every note and asks for confirmation, but stdin is not "
            "a terminal. Add --force to rebuild without asking."
        )
        _fail(session, message, EXIT_USAGE)
    question = "A full rebuild embeds every note again, which can take a long time. Continue?"
    try:
        agreed = click.confirm(question, err=True)
    except click.Abort:
        _fail(session, "interrupted; the index is unchanged.", EXIT_INTERRUPTED)
    if not agreed:
        _fail(session, "full rebuild cancelled; the index is unchanged.", EXIT_DAEMON_ERROR)


def _follow_rebuild(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Make the rebuild call while a progress bar follows its events."""
    with _Reporting(session, "rebuild"), render.PassProgress(session.out) as bar:
        return session.client.call("rebuild", args, bar.on_event, read_timeout_s=math.inf)


def _print_rebuild_summary(session: Session, result: dict[str, Any]) -> None:
    """Print the finished pass in one line, or say that the rebuild was queued."""
    if "outcome" not in result:
        session.out.print("Rebuild queued behind the running pass; see `novactl status`.")
        return
    session.out.print(render.pass_summary(result), soft_wrap=True)
    if result.get("admission") == "queued":
        session.out.print("(it waited for the pass that was already running)", style="dim")
    elif result.get("admission") == "joined":
        session.out.print("(it joined the full rebuild that was already running)", style="dim")


def _check_outcome(session: Session, result: dict[str, Any]) -> None:
    """Exit non-zero when the pass the daemon ran did not succeed."""
    outcome = result.get("outcome", "ok")
    if outcome == "ok":
        return
    reason = result.get("error") or "no reason given"
    message = (
        f"pass #{result.get('id')} {outcome}: {reason}. The previous index keeps serving; "
        "see `novactl stats` and the daemon's log."
    )
    _fail(session, message, EXIT_DAEMON_ERROR)


@main.command()
@click.argument("query", nargs=-1, required=True)
@click.option(
    "-k",
    "k",
    type=click.IntRange(1, MAX_K),
    default=DEFAULT_HITS,
    show_default=True,
    metavar="N",
    help="How many hits to return.",
)
@json_option
@click.pass_obj
def search(session: Session, query: tuple[str, ...], k: int, as_json: bool) -> None:
    """Search the notes by meaning. Several QUERY words are joined with spaces.

    With --json, prints the list of hits (path, heading, title, text, score, tags).
    """
    text = " ".join(query).strip()
    if not text:
        raise click.BadParameter("the query is empty", param_hint="QUERY")
    if len(text) > MAX_QUERY_CHARS:
        raise click.BadParameter(
            f"the query is over {MAX_QUERY_CHARS} characters", param_hint="QUERY"
        )
    hits = _hits_of(session, _call(session, "search", {"query": text, "k": k}))
    if as_json:
        _print_json(hits)
    elif not hits:
        session.out.print(f"No notes match {text!r}.", style="dim", markup=False)
    else:
        session.out.print(render.hits_table(hits))


def _hits_of(session: Session, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The list of hits in a search result, checked for shape."""
    hits = result.get("hits")
    if not isinstance(hits, list) or not all(isinstance(hit, dict) for hit in hits):
        message = f"the daemon's search result has no list of hits. {_MISMATCH}"
        _fail(session, message, EXIT_DAEMON_ERROR)
    return hits


@main.command("wait")
@click.option(
    "--timeout",
    "wait_s",
    type=click.FloatRange(min=0, max=MAX_SECONDS, min_open=True),
    callback=_finite,
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Give up after this many seconds.",
)
@json_option
@click.pass_obj
def wait_command(session: Session, wait_s: float, as_json: bool) -> None:
    """Block until the daemon has caught up with its source folder.

    A daemon that is still starting (no socket yet, model loading) is waited for too, so
    `novad ... & novactl wait` works. Exits 0 once it has caught up; 1 with a message if it
    has not within --timeout seconds or the pass that should catch up did not end ok; 3 if
    no daemon came up in that time.
    """
    with _Reporting(session, "wait"):
        result = _wait_through_start(session.client, wait_s)
    if as_json:
        _print_json(result)
        return
    waited = render.fmt_duration(result.get("waited_s"))
    session.out.print(f"Caught up (waited {waited}).", style="green")
