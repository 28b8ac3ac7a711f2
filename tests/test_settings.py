"""fastner.settings: the one table of FASTNER_* settings."""
import os
import re
import subprocess

import pytest

from fastner.settings import BY_NAME, SETTINGS, describe, markdown_table, setting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_deployment_docs_table_is_the_settings_table():
    with open(os.path.join(ROOT, "docs", "deployment.md"), encoding="utf-8") as f:
        assert markdown_table() in f.read()


def test_every_setting_the_code_reads_is_in_the_table():
    files = subprocess.run(["git", "ls-files", "fastner", "service", "Makefile"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    used = set()
    for name in files:
        if name.endswith(".h"):             # C headers: their macros are not settings
            continue
        with open(os.path.join(ROOT, name), encoding="utf-8", errors="replace") as f:
            used |= set(re.findall(r"\bFASTNER_[A-Z_]+\b", f.read()))
    # a build flag, the C macro that records the build's flags, a test hook for the app,
    # where make test-portable tells the tests its tree is
    used -= {"FASTNER_MARCH", "FASTNER_BUILD_FLAGS", "FASTNER_TAGGER", "FASTNER_PORTABLE_TREE"}
    assert used <= set(BY_NAME), used - set(BY_NAME)


def test_values_are_parsed_and_checked():
    assert setting("FASTNER_WORKERS", {}) == 2
    assert setting("FASTNER_WORKERS", {"FASTNER_WORKERS": "4"}) == 4
    assert setting("FASTNER_CACHE_MB", {"FASTNER_CACHE_MB": "0.5"}) == 0.5
    assert setting("FASTNER_MODEL", {"FASTNER_MODEL": ""}) is None
    with pytest.raises(ValueError, match="FASTNER_WORKERS must be an integer; got 'two'"):
        setting("FASTNER_WORKERS", {"FASTNER_WORKERS": "two"})
    with pytest.raises(ValueError, match="FASTNER_MAX_CHARS must be at least 1"):
        setting("FASTNER_MAX_CHARS", {"FASTNER_MAX_CHARS": "0"})
    assert all(s.name.startswith("FASTNER_") and s.help for s in SETTINGS)


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.minimum is not None],
                         ids=lambda s: s.name)
def test_every_bounded_setting_admits_its_minimum_and_refuses_below(spec):
    at = str(int(spec.minimum)) if spec.kind is int else f"{spec.minimum:g}"
    below = str(int(spec.minimum) - 1) if spec.kind is int else f"{spec.minimum - 0.001:g}"
    assert setting(spec.name, {spec.name: at}) == spec.minimum
    with pytest.raises(ValueError) as err:
        setting(spec.name, {spec.name: below})
    assert str(err.value) == f"{spec.name} must be at least {spec.minimum:g}; got {below!r}"


def test_floats_and_ints_are_parsed_as_their_kind():
    assert setting("FASTNER_DRAIN_SECONDS", {"FASTNER_DRAIN_SECONDS": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="FASTNER_DRAIN_SECONDS must be a number; got 'soon'"):
        setting("FASTNER_DRAIN_SECONDS", {"FASTNER_DRAIN_SECONDS": "soon"})
    with pytest.raises(ValueError, match="FASTNER_WORKERS must be an integer; got '2.5'"):
        setting("FASTNER_WORKERS", {"FASTNER_WORKERS": "2.5"})
    assert setting("FASTNER_BIND", {"FASTNER_BIND": "unix:/tmp/s"}) == "unix:/tmp/s"
    assert setting("FASTNER_BIND", {}) == "127.0.0.1:8000"


def test_describe_lists_every_setting_with_its_default():
    text = describe()
    for s in SETTINGS:
        assert f"  {s.name} (default " in text
    assert "FASTNER_MAX_CHARS (default 250,000)" in text
    assert "FASTNER_MODEL (default unset)" in text
    assert "FASTNER_CACHE_MB (default 64.0)" in text


def test_without_a_mapping_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("FASTNER_WORKERS", "7")
    assert setting("FASTNER_WORKERS") == 7
    monkeypatch.delenv("FASTNER_WORKERS")
    assert setting("FASTNER_WORKERS") == 2


def test_describe_gives_two_lines_per_setting():
    lines = describe().split("\n")
    assert len(lines) == 2 * len(SETTINGS)
    assert lines[0] == "  FASTNER_MODEL (default unset)"
    assert lines[1] == "      " + SETTINGS[0].help
