"""The shipped systemd units of the weekly job (tools/systemd, README "The weekly job"): systemd
accepts them, and every command they run is a real cowfs command line."""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from test_snapshot import COWFS

from cowfs import cli
from cowfs.config import UsageError

UNITS = Path(__file__).resolve().parent.parent / "tools" / "systemd"
INSTALLED = "/usr/local/bin/cowfs"


def entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit or env file, in order: systemd allows a key more than
    once (two ExecStart= of a oneshot run one after the other), which configparser does not."""
    out, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


ENV = {key: value for _, key, value in entries(UNITS / "snapshot.env")}
COMMANDS = [(unit.name, value) for unit in sorted(UNITS.glob("*.service"))
            for _, key, value in entries(unit) if key == "ExecStart"]


def subcommands(parser: argparse.ArgumentParser, *path: str) -> set[str]:
    for name in path:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    return set(next(a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)).choices)


def test_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here (test_unit_commands_are_cowfs_commands still runs)")
    # verify checks that ExecStart's program exists: the cowfs under test, not an installed one
    for unit in UNITS.glob("cowfs-*"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, COWFS))
    units = sorted(str(p) for p in tmp_path.iterdir())
    assert len(units) == 4
    res = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                         timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_timers_start_their_services():
    for timer in UNITS.glob("*.timer"):
        keys = {key for section, key, _ in entries(timer) if section == "Timer"}
        assert {"OnCalendar", "Persistent"} <= keys, timer
        assert (UNITS / timer.name.replace(".timer", ".service")).exists()


def test_env_file_defines_every_variable_plainly():
    """systemd's EnvironmentFile= and sh's `.` (the cron lines) read it alike: no quotes, no
    spaces; and it defines every variable the units use."""
    for key, value in ENV.items():
        assert re.fullmatch(r"COWFS_[A-Z]+", key) and re.fullmatch(r"[\w./:@-]+", value), key
    used = {name for _, command in COMMANDS for name in re.findall(r"\$\{(\w+)\}", command)}
    assert used == set(ENV)


@pytest.mark.parametrize("unit, command", COMMANDS)
def test_unit_commands_are_cowfs_commands(unit, command):
    """Each ExecStart, with the example env file's values, parses as a cowfs command line."""
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: ENV[m.group(1)], command))
    assert argv[0] == INSTALLED
    assert argv[1] == "snapshot", "the weekly job only builds, pushes, pulls and collects"
    parser = cli._build_parser()
    if argv[2] not in subcommands(parser, "snapshot"):
        pytest.skip(f"cowfs snapshot {argv[2]} is not in this checkout")
    try:
        args = parser.parse_args(argv[1:])
    except UsageError as e:
        pytest.fail(f"{unit}: {command}: {e}")
    assert args.snapshot_command == argv[2]
    if argv[2] == "build":
        assert (args.root, args.top, args.stats, args.requirements) == (
            ENV["COWFS_ROOT"], int(ENV["COWFS_TOP"]), ENV["COWFS_STATS"], None)
