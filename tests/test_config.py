"""Settings: defaults, then TOML file, then NOVA_* environment, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from novad.config import load_config
from novad.errors import ConfigError


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "novad.toml"
    toml.write_text('source = "/from/file"\ndebounce_ms = 100\nmax_wait_ms = 900\n')
    env = {"NOVA_DEBOUNCE_MS": "200", "NOVA_CONFIG": str(toml)}
    config = load_config({"source": None, "debounce_ms": 300}, env)
    assert config.source == Path("/from/file")
    assert config.debounce_ms == 300
    assert config.max_wait_ms == 900
    assert config.config_file == toml


def test_nova_socket_names_the_socket(tmp_path: Path) -> None:
    env = {"NOVA_SOCKET": str(tmp_path / "s.sock"), "XDG_CONFIG_HOME": str(tmp_path)}
    assert load_config({"source": tmp_path}, env).socket_path == tmp_path / "s.sock"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({}, "no source folder"),
        ({"source": "/n", "log_level": "loud"}, "log_level"),
        ({"source": "/n", "embed_threads": 0}, "embed_threads"),
        ({"source": "/n", "socket_path": "/tmp/" + "s" * 120}, "107-byte"),
        ({"source": "/n", "debounce_ms": 900, "max_wait_ms": 100}, "max_wait_ms"),
        ({"source": "/n", "shutdown_timeout_s": -1}, "shutdown_timeout_s"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    tmp_path: Path, flags: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(flags, {"XDG_CONFIG_HOME": str(tmp_path)})


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "novad.toml"
    toml.write_text('source = "/n"\ndebounce = 5\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({"config_file": toml}, {})


def test_a_non_numeric_environment_value_is_refused(tmp_path: Path) -> None:
    env = {"NOVA_DEBOUNCE_MS": "soon", "XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="debounce_ms"):
        load_config({"source": "/n"}, env)


@pytest.mark.parametrize(
    ("flags", "env", "toml", "message"),
    [
        (
            {},
            {"NOVA_DEBOUNCE_MS": "abc"},
            "",
            "debounce_ms='abc' (from environment variable NOVA_DEBOUNCE_MS) is not a valid whole",
        ),
        ({}, {}, 'max_wait_ms = "later"\n', "max_wait_ms (from config file {toml}) must be a"),
        (
            {"embed_batch_size": "many"},
            {},
            "",
            "(from flag --embed-batch-size) is not a valid whole number",
        ),
        (
            {},
            {"NOVA_EMBED_THREADS": "0"},
            "",
            "got 0 (from environment variable NOVA_EMBED_THREADS)",
        ),
        ({}, {"NOVA_SOCKET": "/tmp/" + "s" * 120}, "", "(from environment variable NOVA_SOCKET)"),
        ({"socket_path": "/tmp/" + "s" * 120}, {}, "", "(from flag --socket) is longer"),
        ({"debounce_ms": 900}, {}, "max_wait_ms = 100\n", "max_wait_ms=100 (from config file"),
    ],
    ids=["env", "file", "flag", "env-range", "env-socket", "flag-socket", "file-and-flag"],
)
def test_a_bad_value_names_the_variable_file_or_flag_it_came_from(
    tmp_path: Path, flags: dict, env: dict, toml: str, message: str
) -> None:
    config_file = tmp_path / "novad.toml"
    config_file.write_text('source = "/n"\n' + toml)
    env = {**env, "NOVA_CONFIG": str(config_file)}

    with pytest.raises(ConfigError) as caught:
        load_config(flags, env)

    assert message.format(toml=config_file) in str(caught.value)


def test_the_packaged_example_config_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "packaging" / "novad.toml.example"
    config = load_config({"config_file": example}, {})
    assert config.source == Path("/home/me/notes")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("poll_interval_ms = true\n", "poll_interval_ms (from config file {toml}) must be a whole"),
        (
            "rescan_interval_s = false\n",
            "rescan_interval_s (from config file {toml}) must be a num",
        ),
        ("poll_interval_ms = 1.5\n", "must be a whole number, got 1.5"),
        ('state_dir = ["/var/lib"]\n', "state_dir (from config file {toml}) must be a string"),
        ("poll_interval_ms = 1\n", "poll_interval_ms must be 100 to 86400000 ms (a day), got 1"),
        ("rescan_interval_s = 0.01\n", "rescan_interval_s must be 0 (off) or 1 to 604800"),
        ("rescan_interval_s = nan\n", "rescan_interval_s=nan (from config file {toml}) is not"),
        ("rescan_interval_s = inf\n", "is not a valid finite number"),
        ('watch_mode = "inotify"\n', "watch_mode 'inotify' (from config file {toml}) must be one"),
        ('include = ["[z-a].md"]\n', "include (from config file {toml}) holds a pattern"),
        ('exclude = ["!"]\n', "exclude (from config file {toml}) holds a pattern"),
        ('exclude = "drafts/"\n', "exclude (from config file {toml}) must be an array of strings"),
        ("include = [1]\n", "include (from config file {toml}) must be an array of strings"),
        ('debounce_ms = "300"\n', "debounce_ms (from config file {toml}) must be a whole number"),
        ('config_file = "/etc/passwd"\n', "unknown setting(s) config_file"),
    ],
)
def test_watch_settings_of_the_wrong_type_or_range_are_refused(
    tmp_path: Path, toml: str, message: str
) -> None:
    config_file = tmp_path / "novad.toml"
    config_file.write_text('source = "/n"\n' + toml)
    with pytest.raises(ConfigError) as caught:
        load_config({"config_file": config_file}, {})
    assert message.format(toml=config_file) in str(caught.value)


def test_patterns_come_from_toml_arrays_and_comma_separated_variables(tmp_path: Path) -> None:
    config_file = tmp_path / "novad.toml"
    config_file.write_text('source = "/n"\ninclude = ["journal/", "*.txt"]\n')
    config = load_config({"config_file": config_file}, {"NOVA_EXCLUDE": ".*/, drafts/"})
    assert config.include == ("journal/", "*.txt")
    assert config.exclude == (".*/", "drafts/")
    assert config.notes.is_note("journal/a.md") and not config.notes.is_note("journal/drafts/b.md")
