"""Rich rendering of the daemon's results: figure tables, hit tables, a pass progress bar.

Every function here takes a result map exactly as the daemon sent it and returns a Rich
renderable; nothing here talks to the socket or decides exit codes. Results are read
leniently: a missing or null figure (there is no pass yet, or an older daemon lacks the
field) shows as a dash instead of failing the whole command. Text that comes from notes or
the daemon is always wrapped in ``Text`` so brackets in a heading are never read as markup.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console, Group, NewLine, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

DASH = "–"
SNIPPET_CHARS = 160
_STATE_STYLES = {"idle": "green", "scanning": "yellow", "rebuilding": "yellow"}
_OUTCOME_STYLES = {"ok": "green", "failed": "red", "cancelled": "yellow"}


def fmt_count(value: Any) -> str:
    """Format an integer count with thousands separators."""
    return DASH if value is None else f"{value:,}"


def fmt_bytes(value: Any) -> str:
    """Format a byte count in binary units (KiB, MiB, GiB)."""
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return DASH


def fmt_duration(seconds: Any) -> str:
    """Format a duration in the largest unit that keeps it readable."""
    if seconds is None:
        return DASH
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def fmt_rate(value: Any, unit: str) -> str:
    """Format a rate such as chunks per second."""
    return DASH if value is None else f"{value:.1f} {unit}/s"


def fmt_ago(unix_time: Any) -> str:
    """Format a unix time as how long ago it was."""
    if unix_time is None:
        return DASH
    return f"{fmt_duration(max(0.0, time.time() - unix_time))} ago"


def fmt_tally(counts: Any) -> str:
    """Format a ``{name: count}`` map as ``name count, name count``."""
    if not counts:
        return DASH
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


def error_text(message: str) -> Text:
    """The red ``error:`` line every failed command prints on stderr."""
    return Text.assemble(("error: ", "bold red"), (message, "red"))


def pass_summary(summary: Mapping[str, Any]) -> Text:
    """One line describing a finished pass (a PASS map)."""
    outcome = str(summary.get("outcome", DASH))
    text = Text.assemble(
        f"{summary.get('kind', DASH)} pass #{summary.get('id', DASH)} "
        f"({summary.get('trigger', DASH)}) ",
        (outcome, _OUTCOME_STYLES.get(outcome, "")),
        f" in {fmt_duration(summary.get('duration_s'))}: ",
        f"{fmt_count(summary.get('files_scanned'))} notes scanned, "
        f"{fmt_count(summary.get('files_changed'))} changed, "
        f"{fmt_count(summary.get('files_deleted'))} deleted, "
        f"{fmt_count(summary.get('files_failed'))} failed; "
        f"{fmt_count(summary.get('chunks_embedded'))} chunks embedded, "
        f"{fmt_count(summary.get('chunks_reused'))} reused, "
        f"{fmt_count(summary.get('chunks_deleted'))} deleted "
        f"({fmt_rate(summary.get('chunks_per_s'), 'chunks')}); "
        f"peak RSS {fmt_bytes(summary.get('peak_rss_bytes'))}",
    )
    if summary.get("error"):
        text.append(f" — {summary['error']}", style="red")
    return text


_PLAN_ROWS = [
    ("add", "notes to add"),
    ("change", "notes changed"),
    ("rename", "notes renamed or moved"),
    ("delete", "notes deleted"),
    ("skip", "notes to skip"),
    ("unchanged", "notes unchanged"),
]


def plan_view(plan: Mapping[str, Any]) -> Group:
    """What a pass would do (a PLAN map): notes and chunks by fate, and the time it takes."""
    kind = str(plan.get("kind", DASH))
    article = "an" if kind.startswith(("a", "e", "i", "o", "u")) else "a"
    title = f"Dry run of {article} {kind} pass (nothing was changed)"
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("for example", overflow="fold")
    files = plan.get("files") or {}
    examples = plan.get("examples") or {}
    for key, label in _PLAN_ROWS:
        shown = ", ".join(str(e) for e in examples.get(key, [])[:3])
        table.add_row(label, fmt_count(files.get(key)), shown)
    chunks = plan.get("chunks") or {}
    table.add_row("chunks to embed", fmt_count(chunks.get("embed")), "")
    table.add_row("chunks reusing a stored vector", fmt_count(chunks.get("reuse")), "")
    table.add_row("chunks kept as they are", fmt_count(chunks.get("keep")), "")
    table.add_row("chunks to delete", fmt_count(chunks.get("delete")), "")
    estimate = plan.get("estimate_s")
    if estimate is None:
        line = "Time: no measured throughput yet (no pass has embedded anything)."
    else:
        line = (
            f"Estimated time: {fmt_duration(estimate)} at "
            f"{fmt_rate(plan.get('chunks_per_s'), 'chunks')} (median of past passes)."
        )
    return Group(table, Text(line))


def progress_summary(progress: Mapping[str, Any]) -> Text:
    """One line describing a pass that is still running (a PROGRESS map)."""
    return Text(
        f"{progress.get('kind', DASH)} pass ({progress.get('trigger', DASH)}), "
        f"{progress.get('phase', DASH)}: {fmt_count(progress.get('done'))}/"
        f"{fmt_count(progress.get('total'))} notes, "
        f"{fmt_count(progress.get('chunks_embedded'))} chunks embedded, "
        f"{fmt_duration(progress.get('elapsed_s'))} so far, "
        f"RSS {fmt_bytes(progress.get('rss_bytes'))}",
        style="yellow",
    )


def _figures(title: str | None, rows: Iterable[tuple[str, str | Text]]) -> Table:
    """A two-column table of labelled figures."""
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else Text(value))
    return table


def status_table(status: Mapping[str, Any]) -> Table:
    """The ``novactl status`` view: state, source, counts, model, watch mode, passes."""
    state = str(status.get("state", DASH))
    present = status.get("source_present")
    source = Text(str(status.get("source", DASH)))
    source.append(" (present)" if present else " (missing)", "green" if present else "bold red")
    current = status.get("pass")
    last = status.get("last_pass")
    watch = status.get("watch") or {}
    repair = status.get("store_repair")
    return _figures(
        None,
        [
            *([("Store repair", Text(str(repair), style="bold red"))] if repair else []),
            ("State", Text(state, style=_STATE_STYLES.get(state, "cyan"))),
            ("Daemon", _daemon_line(status)),
            ("Source", source),
            ("Notes", fmt_count(status.get("files"))),
            ("Chunks", _chunks_line(status)),
            ("Skipped", fmt_count(status.get("skipped"))),
            ("Pending", fmt_count(status.get("pending"))),
            ("Generation", fmt_count(status.get("generation"))),
            ("Model", _model_line(status)),
            ("Watch", _watch_line(watch)),
            ("Current pass", progress_summary(current) if current else "none"),
            ("Last pass", _last_pass_line(last) if last else "none yet"),
            ("Socket", str(status.get("socket", DASH))),
            ("State dir", str(status.get("state_dir", DASH))),
        ],
    )


def _watch_line(watch: Mapping[str, Any]) -> Text:
    """How changes are noticed: mode, inotify watches against the limit, lost events."""
    mode = str(watch.get("mode", DASH))
    line = Text(mode, style="bold red" if mode == "off" else "")
    if mode == "native" and watch.get("watches") is not None:
        line.append(
            f", {fmt_count(watch.get('watches'))} of {fmt_count(watch.get('watch_limit'))} "
            "inotify watches"
        )
    elif mode == "polling":
        line.append(f" every {fmt_duration((watch.get('poll_interval_ms') or 0) / 1000)}")
    if watch.get("fallback_reason"):
        line.append(f" ({watch['fallback_reason']})", "yellow")
    lost = (watch.get("overflows") or 0, watch.get("restarts") or 0)
    if any(lost):
        line.append(f"; {lost[0]} overflows, {lost[1]} restarts", "yellow")
    if watch.get("rescan_backoff_s"):
        line.append(f"; rescans back off {fmt_duration(watch['rescan_backoff_s'])}", "yellow")
    interval = watch.get("rescan_interval_s")
    line.append(
        f"; safety rescan every {fmt_duration(interval)}" if interval else "; no safety rescan"
    )
    return line


def _daemon_line(status: Mapping[str, Any]) -> str:
    """Version, pid and uptime of the daemon."""
    return (
        f"novad {status.get('version', DASH)}, pid {status.get('pid', DASH)}, "
        f"up {fmt_duration(status.get('uptime_s'))}"
    )


def _model_line(figures: Mapping[str, Any]) -> str:
    """The embedding model and its vector dimension."""
    return f"{figures.get('model', DASH)} ({fmt_count(figures.get('dimension'))} dimensions)"


def _last_pass_line(last: Mapping[str, Any]) -> Text:
    """The last pass's summary, with when it started."""
    line = pass_summary(last)
    line.append(f"; started {fmt_ago(last.get('started_at'))}")
    return line


def stats_view(stats: Mapping[str, Any]) -> Group:
    """The ``novactl stats`` view: figure tables, then skipped files and recent passes."""
    store = stats.get("store") or {}
    passes = stats.get("passes") or {}
    parts: list[RenderableType] = [
        _figures("Store", _store_rows(store)),
        _figures("Passes", _passes_rows(passes)),
        _figures("Embedder and resources", _embedder_rows(stats)),
        _file_reasons("Skipped notes", stats.get("skipped_files") or []),
        _file_reasons("Warnings", stats.get("warnings") or []),
        passes_table(stats.get("recent_passes") or []),
    ]
    spaced: list[RenderableType] = []
    for part in parts:
        spaced += [part, NewLine()]
    return Group(*spaced[:-1])


def _store_rows(store: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows of store figures."""
    return [
        ("Notes", fmt_count(store.get("notes"))),
        ("Chunks", _chunks_line(store)),
        ("Skipped", fmt_count(store.get("skipped"))),
        ("Store size", fmt_bytes(store.get("store_bytes"))),
        ("State dir size", fmt_bytes(store.get("state_dir_bytes"))),
        ("Generation", fmt_count(store.get("generation"))),
        ("Collection", str(store.get("collection", DASH))),
        ("Model", _model_line(store)),
    ]


def _passes_rows(passes: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows of pass figures; ``success_rate`` is read as a fraction from 0 to 1."""
    rate = passes.get("success_rate")
    return [
        ("Total", fmt_count(passes.get("total"))),
        ("By kind", fmt_tally(passes.get("by_kind"))),
        ("By trigger", fmt_tally(passes.get("by_trigger"))),
        ("Failed", fmt_count(passes.get("failed"))),
        ("Success rate", DASH if rate is None else f"{rate * 100:.1f} %"),
        ("Last duration", fmt_duration(passes.get("last_duration_s"))),
        ("Median duration", fmt_duration(passes.get("median_duration_s"))),
        ("Last speed", fmt_rate(passes.get("last_chunks_per_s"), "chunks")),
        ("Median speed", fmt_rate(passes.get("median_chunks_per_s"), "chunks")),
        ("Peak RSS", fmt_bytes(passes.get("peak_rss_bytes"))),
    ]


def _embedder_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows of embedder and process figures."""
    embedder = stats.get("embedder") or {}
    resources = stats.get("resources") or {}
    cpu = resources.get("cpu_percent")
    return [
        ("Texts embedded", fmt_count(embedder.get("texts_embedded"))),
        ("Chunks reused", fmt_count(embedder.get("chunks_reused"))),
        ("RSS", fmt_bytes(resources.get("rss_bytes"))),
        ("CPU", DASH if cpu is None else f"{cpu:.1f} %"),
    ]


def _file_reasons(title: str, entries: Sequence[Mapping[str, Any]]) -> RenderableType:
    """A path/reason table, or a one-line note when there are none."""
    if not entries:
        return Text(f"{title}: none", style="dim")
    table = Table(title=f"{title} ({len(entries):,})", title_justify="left")
    table.add_column("Path", overflow="fold")
    table.add_column("Reason")
    for entry in entries:
        table.add_row(Text(str(entry.get("path", DASH))), Text(str(entry.get("reason", DASH))))
    return table


def passes_table(passes: Sequence[Mapping[str, Any]]) -> RenderableType:
    """Recent passes, one row each, newest first; narrow enough for 80 columns."""
    if not passes:
        return Text("Recent passes: none yet", style="dim")
    table = Table(
        title="Recent passes",
        title_justify="left",
        caption="At: local start time. Notes: changed / deleted / failed. Ch/s: chunks/s.",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    widths = {
        "#": 2,
        "Kind": 4,
        "Trigger": 7,
        "At": 5,
        "Took": 6,
        "Notes": 9,
        "Embedded": 8,
        "Ch/s": 5,
        "Outcome": 9,
    }
    for name, width in widths.items():
        right = name in ("Notes", "Embedded", "Ch/s")
        table.add_column(name, min_width=width, justify="right" if right else "left")
    for entry in passes:
        table.add_row(*_pass_cells(entry))
    return table


def _pass_cells(entry: Mapping[str, Any]) -> list[str | Text]:
    """The cells of one row of the recent-passes table."""
    outcome = str(entry.get("outcome", DASH))
    started = entry.get("started_at")
    files = ("files_changed", "files_deleted", "files_failed")
    return [
        str(entry.get("id", DASH)),
        Text(_KIND_SHORT.get(str(entry.get("kind")), str(entry.get("kind", DASH)))),
        Text(str(entry.get("trigger", DASH))),
        DASH if started is None else time.strftime("%H:%M", time.localtime(started)),
        fmt_duration(entry.get("duration_s")),
        "/".join(fmt_count(entry.get(key)) for key in files),
        fmt_count(entry.get("chunks_embedded")),
        DASH if entry.get("chunks_per_s") is None else f"{entry['chunks_per_s']:.1f}",
        Text(outcome, style=_OUTCOME_STYLES.get(outcome, "")),
    ]


_KIND_SHORT = {"incremental": "incr", "full": "full"}


def hits_table(hits: Sequence[Mapping[str, Any]]) -> Table:
    """Search hits: score, path, heading and a snippet of the chunk's text."""
    table = Table(show_lines=True)
    table.add_column("Score", justify="right", no_wrap=True)
    table.add_column("Path", overflow="fold")
    table.add_column("Heading")
    table.add_column("Text", ratio=1)
    for hit in hits:
        score = hit.get("score")
        table.add_row(
            DASH if score is None else f"{score:.3f}",
            _hit_path(hit),
            Text(str(hit.get("heading") or DASH)),
            Text(snippet(str(hit.get("text", ""))), style="dim"),
        )
    return table


def _chunks_line(figures: Mapping[str, Any]) -> str:
    """Chunks, and the distinct texts (vectors) they share, when the daemon says."""
    line = fmt_count(figures.get("chunks"))
    if figures.get("vectors") is not None:
        line += f" ({fmt_count(figures['vectors'])} distinct texts)"
    return line


def _hit_path(hit: Mapping[str, Any]) -> Text:
    """The hit's note, and how many other notes hold the same text."""
    path = Text(str(hit.get("path", DASH)))
    others = int(hit.get("notes") or 1) - 1
    if others > 0:
        path.append(f"\n+{others} more note{'s' if others > 1 else ''} with this text", "dim")
    return path


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The text on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class FilesRateColumn(ProgressColumn):
    """Notes per second: the daemon's own figure when known, else Rich's estimate."""

    def render(self, task: Task) -> Text:
        """Render the rate of ``task``."""
        rate = task.fields.get("files_per_s")
        if rate is None:
            rate = task.speed
        shown = DASH if rate is None else f"{rate:.1f}"
        return Text(f"{shown} files/s", style="progress.data.speed")


class PassProgress:
    """A live progress bar driven by the ``{"pass": PROGRESS}`` events of a rebuild.

    Use it as a context manager around the call and pass ``on_event`` as the callback.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            FilesRateColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,  # piped output gets the summary line alone
        )
        self._task = self._progress.add_task("waiting for the daemon", total=None)
        self.events = 0

    def __enter__(self) -> PassProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Move the bar to where the daemon's latest progress event says the pass is."""
        if "admission" in event:
            # Whether this request started a pass, joined a running one, or waits its turn.
            self._progress.console.print(
                f"Rebuild {event.get('admission')}: {event.get('reason', '')}",
                style="dim",
                markup=False,
            )
            return
        progress = event.get("pass")
        if not isinstance(progress, dict):
            return
        self.events += 1
        done = int(progress.get("done") or 0)
        elapsed_s = float(progress.get("elapsed_s") or 0.0)
        self._progress.update(
            self._task,
            description=escape(f"{progress.get('kind', '?')} pass: {progress.get('phase', '?')}"),
            completed=done,
            total=progress.get("total") or None,
            files_per_s=done / elapsed_s if elapsed_s > 0 else None,
        )
