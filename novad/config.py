"""Nova's settings: one frozen dataclass, loaded once and passed down.

Precedence, lowest first: built-in defaults, the TOML file (``--config``, else
``$XDG_CONFIG_HOME/nova/novad.toml`` for a user or ``/etc/nova/novad.toml`` for root, when
it exists), ``NOVA_*`` environment variables (``NOVA_DEBOUNCE_MS=500``), then command-line
flags. No other module reads the environment. Every setting carries its unit in its name.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novad import paths
from novad.errors import ConfigError
from novad.paths import MAX_SOCKET_PATH_BYTES
from novad.scanner import DEFAULT_EXCLUDE, NoteFilter

LOG_LEVELS = ("debug", "info", "warning", "error")
WATCH_MODES = ("auto", "polling")


def _default_threads() -> int:
    # Leave a core for the event loop and the rest of the machine.
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class Config:
    """Every setting of the daemon. Built by ``load_config``; never mutated."""

    source: Path
    state_dir: Path = field(default_factory=paths.default_state_dir)
    socket_path: Path = field(default_factory=paths.default_socket_path)
    log_level: str = "info"
    model: str = "all-MiniLM-L6-v2"
    embed_threads: int = field(default_factory=_default_threads)
    embed_batch_size: int = 8
    chunk_target_tokens: int = 200
    debounce_ms: int = 300
    max_wait_ms: int = 5000
    watch_mode: str = "auto"
    poll_interval_ms: int = 1000
    rescan_interval_s: float = 900.0
    max_file_bytes: int = 1024 * 1024
    max_request_bytes: int = 1 << 20
    max_connections: int = 64
    shutdown_timeout_s: float = 10.0
    extensions: tuple[str, ...] = (".md", ".markdown", ".txt")
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    config_file: Path | None = None

    @functools.cached_property
    def notes(self) -> NoteFilter:
        """Which paths are notes: extensions, include and exclude patterns."""
        return NoteFilter(self.extensions, self.include, self.exclude)

    @property
    def chroma_dir(self) -> Path:
        """Directory of the embedded ChromaDB store."""
        return self.state_dir / "chroma"

    @property
    def manifest_path(self) -> Path:
        """SQLite manifest: file -> stat, content hash, chunk ids; generations."""
        return self.state_dir / "manifest.sqlite3"

    @property
    def metrics_path(self) -> Path:
        """SQLite metrics: pass history and counters."""
        return self.state_dir / "metrics.sqlite3"

    @property
    def lock_path(self) -> Path:
        """Lock file held for the daemon's lifetime: one daemon per state dir."""
        return self.state_dir / "novad.lock"


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_PATH_FIELDS = {"source", "state_dir", "socket_path", "config_file"}
_AT_LEAST_ONE = (
    "embed_threads",
    "embed_batch_size",
    "chunk_target_tokens",
    "max_file_bytes",
    "max_request_bytes",
    "max_connections",
)
# Inclusive ranges of settings whose extremes make no sense (a 1 ms poll burns a core).
_RANGES: dict[str, tuple[float, float, str]] = {
    "debounce_ms": (0, 600_000, "0 to 600000 ms"),
    "max_wait_ms": (0, 3_600_000, "0 to 3600000 ms (an hour)"),
    "poll_interval_ms": (100, 86_400_000, "100 to 86400000 ms (a day)"),
}
_PATTERN_FIELDS = ("include", "exclude")
# Flags whose name is not the setting's name with dashes.
_FLAG_NAMES = {"socket_path": "--socket", "config_file": "--config"}
# Where each given setting came from, for messages: "environment variable NOVA_DEBOUNCE_MS".
Origins = dict[str, str]


def default_config_file(env: Mapping[str, str]) -> Path:
    """Return where the daemon looks for its TOML file when --config is not given."""
    if os.geteuid() == 0 and "XDG_CONFIG_HOME" not in env:
        return Path("/etc/nova/novad.toml")
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nova" / "novad.toml"


def load_config(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Merge defaults, TOML file, NOVA_* environment and flags into one checked Config.

    Args:
        flags: values given on the command line; ``None`` values mean "not given".
        env: the environment to read (``os.environ`` when None).

    Raises:
        ConfigError: a setting is unknown, of the wrong type, or out of range.
    """
    env = os.environ if env is None else env
    given = {k: v for k, v in flags.items() if v is not None}
    config_file = given.get("config_file") or env.get("NOVA_CONFIG")
    path = Path(config_file) if config_file else default_config_file(env)
    values: dict[str, Any] = {}
    origins: Origins = {}
    if config_file or _readable_file(path):
        _merge(values, origins, _read_toml(path), lambda name: f"config file {path}")
        values["config_file"] = path
    _merge(values, origins, _from_env(env), lambda name: f"environment variable {_env(name, env)}")
    _merge(values, origins, given, lambda name: f"flag {_flag(name)}")
    return _build(values, origins)


def _merge(
    values: dict[str, Any],
    origins: Origins,
    layer: Mapping[str, Any],
    origin: Callable[[str], str],
) -> None:
    """Lay ``layer`` over ``values``, recording ``origin(name)`` for each setting it gives."""
    for name, value in layer.items():
        values[name] = value
        origins[name] = origin(name)


def _env(name: str, env: Mapping[str, str]) -> str:
    """The environment variable a setting was read from (``_from_env`` prefers NOVA_SOCKET)."""
    if name == "socket_path" and "NOVA_SOCKET" in env:
        return "NOVA_SOCKET"
    return f"NOVA_{name.upper()}"


def _flag(name: str) -> str:
    """The command-line flag of a setting: ``debounce_ms`` is ``--debounce-ms``."""
    return _FLAG_NAMES.get(name) or "--" + name.replace("_", "-")


def _from(origins: Mapping[str, str], name: str) -> str:
    """`` (from <where>)``, naming where a setting's value came from, for messages."""
    origin = origins.get(name)
    return f" (from {origin})" if origin else " (the default)"


def _readable_file(path: Path) -> bool:
    """Whether an optional default config file is there to read (unreadable means absent)."""
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist; create it or drop --config") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    for name, value in data.items():
        if name in _FIELDS:
            _check_type(name, value, {name: f"config file {path}"})
    settable = set(_FIELDS) - {"config_file"}
    unknown = sorted(set(data) - settable)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(settable))}"
        )
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _FIELDS:
        raw = env.get(f"NOVA_{name.upper()}")
        if raw is not None and name != "config_file":
            values[name] = raw
    if "NOVA_SOCKET" in env:
        values["socket_path"] = env["NOVA_SOCKET"]
    return values


def _coerce(name: str, value: Any, origins: Origins) -> Any:
    default = _FIELDS[name].default
    kind = type(default) if default is not dataclasses.MISSING else None
    if name == "embed_threads":
        kind = int
    try:
        if name in _PATH_FIELDS:
            return Path(str(value)).expanduser()
        if name == "extensions":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(x.strip().lower() for x in items if x.strip())
        if name in _PATTERN_FIELDS:
            return _patterns(name, value, origins)
        if kind is int:
            return int(value)
        if kind is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return str(value)
    except (TypeError, ValueError) as exc:
        kind_name = {int: "whole number", float: "finite number"}.get(kind or str, "value")
        raise ConfigError(
            f"setting {name}={value!r}{_from(origins, name)} is not a valid {kind_name}"
        ) from exc


def _check_type(name: str, value: Any, origins: Origins) -> None:
    """Refuse a TOML value of the wrong type instead of converting it (``true`` is not 1)."""
    default = _FIELDS[name].default
    if name in _PATTERN_FIELDS or name == "extensions":
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        expected = 'an array of strings such as ["drafts/", "*.tmp.md"]'
    elif name == "embed_threads" or isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    else:
        ok = isinstance(value, str)  # paths and words
        expected = "a string"
    if not ok:
        raise ConfigError(f"setting {name}{_from(origins, name)} must be {expected}, got {value!r}")


def _patterns(name: str, value: Any, origins: Origins) -> tuple[str, ...]:
    """A list of gitignore-style patterns: a TOML array, or comma-separated in a variable."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ConfigError(
            f"setting {name}{_from(origins, name)} must be a list of patterns such as "
            f'["drafts/", "*.tmp.md"], got {value!r}'
        )
    return tuple(x.strip() for x in items if x.strip())


def _build(values: dict[str, Any], origins: Origins) -> Config:
    if "source" not in values:
        raise ConfigError("no source folder: pass --source DIR (or set source in the config file)")
    coerced = {k: _coerce(k, v, origins) for k, v in values.items()}
    coerced["source"] = coerced["source"].absolute()
    config = Config(**coerced)
    _check(config, origins)
    return config


def _check(config: Config, origins: Origins) -> None:
    """Refuse contradictory or out-of-range settings, naming where each value came from."""
    at = functools.partial(_from, origins)
    _check_paths(config, at)
    _check_numbers(config, at)
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"log_level {config.log_level!r}{at('log_level')} must be one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    if config.watch_mode not in WATCH_MODES:
        raise ConfigError(
            f"watch_mode {config.watch_mode!r}{at('watch_mode')} must be one of "
            f"{', '.join(WATCH_MODES)}"
        )
    for name in _PATTERN_FIELDS:
        try:
            NoteFilter(config.extensions, **{name: getattr(config, name)})
        except (ValueError, re.error) as exc:
            raise ConfigError(
                f"setting {name}{at(name)} holds a pattern that is not gitignore syntax: {exc}"
            ) from exc
    if not config.extensions or not all(e.startswith(".") for e in config.extensions):
        raise ConfigError(
            f"extensions must be suffixes starting with '.', got {config.extensions}"
            f"{at('extensions')}"
        )


def _check_paths(config: Config, at: Callable[[str], str]) -> None:
    if config.source.exists() and not config.source.is_dir():
        raise ConfigError(f"source {config.source}{at('source')} is a file, not a folder of notes")
    if config.state_dir.exists() and not config.state_dir.is_dir():
        raise ConfigError(f"state_dir {config.state_dir}{at('state_dir')} is a file, not a folder")
    if paths.socket_path_too_long(config.socket_path):
        raise ConfigError(
            f"socket path {config.socket_path}{at('socket_path')} is longer than the "
            f"{MAX_SOCKET_PATH_BYTES}-byte limit of Unix sockets; choose a shorter one"
        )


def _check_numbers(config: Config, at: Callable[[str], str]) -> None:
    if not 1 <= config.embed_threads <= 256:
        got = config.embed_threads
        raise ConfigError(
            f"embed_threads must be between 1 and 256, got {got}{at('embed_threads')}"
        )
    for name in _AT_LEAST_ONE:
        if (got := getattr(config, name)) < 1:
            raise ConfigError(f"setting {name} must be at least 1, got {got}{at(name)}")
    if not 0 < config.shutdown_timeout_s < 3600:
        raise ConfigError(
            f"shutdown_timeout_s must be between 0 and 3600 seconds, got "
            f"{config.shutdown_timeout_s}{at('shutdown_timeout_s')}"
        )
    for name, (low, high, words) in _RANGES.items():
        if not low <= (got := getattr(config, name)) <= high:
            raise ConfigError(f"setting {name} must be {words}, got {got}{at(name)}")
    if not (config.rescan_interval_s == 0 or 1 <= config.rescan_interval_s <= 604_800):
        raise ConfigError(
            f"rescan_interval_s must be 0 (off) or 1 to 604800 seconds (a week), got "
            f"{config.rescan_interval_s}{at('rescan_interval_s')}"
        )
    if config.debounce_ms < 0 or config.max_wait_ms < config.debounce_ms:
        raise ConfigError(
            "debounce_ms must be >= 0 and max_wait_ms >= debounce_ms, got debounce_ms="
            f"{config.debounce_ms}{at('debounce_ms')} and max_wait_ms={config.max_wait_ms}"
            f"{at('max_wait_ms')}"
        )
