"""The console command: `--version`, one `--help` per command, errors that name the command."""

from __future__ import annotations

from importlib import metadata

import pytest

from classify_gateway import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"classify-gateway {metadata.version('classify-gateway')}"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert out.startswith("usage: classify-gateway ")
    for command in ("serve", "emulator", "demo"):
        assert f"\n    {command} " in out, out


@pytest.mark.parametrize("command", ["serve", "emulator", "demo"])
def test_each_command_has_its_own_help_under_its_full_name(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: classify-gateway {command} "), out


def test_serve_help_names_its_flags_and_their_variables(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "serve", "--help")
    for flag, var in [
        ("--listen", "CLASSIFY_GATEWAY_LISTEN"),
        ("--metrics-listen", "CLASSIFY_GATEWAY_METRICS_LISTEN"),
        ("--upstream-url", "CLASSIFY_GATEWAY_UPSTREAM_URL"),
        ("--log-level", "CLASSIFY_GATEWAY_LOG_LEVEL"),
    ]:
        assert flag in out and var in " ".join(out.split()), (flag, out)


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["bogus"], "classify-gateway: error: argument COMMAND: invalid choice: 'bogus'"),
        ([], "classify-gateway: error: the following arguments are required: COMMAND"),
        (["serve", "--nope"], "classify-gateway: error: unrecognized arguments: --nope"),
        (["emulator", "--nope"], "classify-gateway emulator: error: unrecognized arguments"),
        (["demo", "--nope"], "classify-gateway demo: error: unrecognized arguments"),
    ],
)
def test_usage_errors_name_the_command_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert names in err, err
    assert out == ""


def test_a_bad_setting_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSIFY_GATEWAY_MAX_PAGES_CAP", "many")
    code, _, err = run(capsys, "serve")
    assert code == 2
    assert err.startswith("classify-gateway: configuration error:")
    assert "CLASSIFY_GATEWAY_MAX_PAGES_CAP" in err
    assert len(err.strip().splitlines()) == 1
