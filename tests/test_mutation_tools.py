"""The mutation-testing scripts (make mutate, make mutate-kernels) stay runnable: their
lists match the code, and bad arguments are refused. The runs themselves take tens of
minutes and are not part of make test (docs/testing.md)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "mutation"))
import kernel_mutants  # noqa: E402
import mutate  # noqa: E402


def test_every_module_under_mutation_exists_and_has_its_tests():
    for module, tests in mutate.MODULES.items():
        assert os.path.isfile(os.path.join(ROOT, module)), module
        assert tests and all(os.path.isfile(os.path.join(ROOT, t)) for t in tests), module


def test_service_modules_are_staged_inside_the_package():
    assert mutate.staged_path("service/api.py") == "fastner/service/api.py"
    assert mutate.staged_path("fastner/io.py") == "fastner/io.py"


def test_equivalent_mutants_each_say_why():
    names = mutate.equivalents()
    assert names
    for name, why in names.items():
        assert name.startswith(("fastner.", "service.")) and "__mutmut_" in name, name
        assert len(why) > 10, name


def test_an_unknown_module_is_refused():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "mutation", "mutate.py"),
                           "fastner/nothing.py"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "not a module under mutation testing: fastner/nothing.py" in done.stderr


@pytest.mark.parametrize("mutation", kernel_mutants.MUTATIONS, ids=lambda m: m[0])
def test_each_kernel_mutation_applies_to_exactly_one_place(mutation):
    name, path, text, mutant, extra = mutation
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        source = f.read()
    assert source.count(text) == 1, name
    assert text != mutant
    assert all(t == "portable" or os.path.isfile(os.path.join(ROOT, t)) for t in extra)


def test_kernel_mutations_are_listed_by_name():
    done = subprocess.run([sys.executable,
                           os.path.join(ROOT, "tests", "mutation", "kernel_mutants.py"), "--list"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [m[0] for m in kernel_mutants.MUTATIONS]


def test_report_counts_a_runs_verdicts_without_equivalents(tmp_path, monkeypatch, capsys):
    import json
    meta = tmp_path / "fastner_io" / "mutants" / "fastner" / "io.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"fastner.io.x_a__mutmut_1": 1, "fastner.io.x_a__mutmut_2": 0,
             "fastner.io.x_a__mutmut_3": -11, "fastner.io.x_a__mutmut_4": 36,
             "fastner.io.x_a__mutmut_5": 0}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text("fastner.io.x_a__mutmut_5  # changes nothing observable\n")
    monkeypatch.setattr(mutate, "STAGES", str(tmp_path))
    monkeypatch.setattr(mutate, "EQUIVALENT", str(equivalent))
    assert mutate.main(["fastner/io.py", "fastner/tags.py", "--report"]) == 1     # 75% < 90%
    out = capsys.readouterr().out
    assert "fastner/io.py: 3 of 4 killed (75%), 1 equivalent left out" in out
    assert "fastner/tags.py: not run" in out
    assert "fastner.io.x_a__mutmut_2  [0]" in out and "fastner.io.x_a__mutmut_3" in out


def test_survivors_reruns_only_the_mutants_not_killed_with_todays_tests(tmp_path, monkeypatch,
                                                                       capsys):
    import json
    where = tmp_path / "fastner_io"
    meta = where / "mutants" / "fastner" / "io.py.meta"
    meta.parent.mkdir(parents=True)
    (where / "fastner").mkdir()
    with open(os.path.join(ROOT, "fastner", "io.py"), "rb") as f:
        (where / "fastner" / "io.py").write_bytes(f.read())
    (where / "tests").mkdir()
    (where / "tests" / "stale_test.py").write_text("")
    (where / "mutants" / "mutmut-stats.json").write_text("{}")
    codes = {"fastner.io.x_a__mutmut_1": 1, "fastner.io.x_a__mutmut_2": 0,
             "fastner.io.x_a__mutmut_3": None, "fastner.io.x_a__mutmut_4": 0}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text("fastner.io.x_a__mutmut_4  # changes nothing observable\n")
    monkeypatch.setattr(mutate, "STAGES", str(tmp_path))
    monkeypatch.setattr(mutate, "EQUIVALENT", str(equivalent))
    asked = []

    def fake_mutmut(stage, module, max_children, names=()):
        asked.append((stage, module, list(names)))
        assert os.path.isfile(os.path.join(stage, "tests", "test_mutation_tools.py"))
        assert not os.path.exists(os.path.join(stage, "tests", "stale_test.py"))
        for base in (stage, os.path.join(stage, "mutants")):     # today's other modules
            assert os.path.isfile(os.path.join(base, "fastner", "features.py"))
            assert os.path.isfile(os.path.join(base, "fastner", "service", "api.py"))
        with open(os.path.join(stage, "fastner", "io.py"), "rb") as f, \
                open(os.path.join(ROOT, "fastner", "io.py"), "rb") as g:
            assert f.read() == g.read()                            # the module: untouched
        assert not os.path.exists(os.path.join(stage, "mutants", "mutmut-stats.json"))
        with open(os.path.join(stage, "pyproject.toml"), encoding="utf-8") as f:
            assert 'pytest_add_cli_args_test_selection = ["tests/test_io.py"' in f.read()
        return dict(codes, **{"fastner.io.x_a__mutmut_2": 1, "fastner.io.x_a__mutmut_3": 1})
    monkeypatch.setattr(mutate, "mutmut_run", fake_mutmut)
    assert mutate.main(["fastner/io.py", "--survivors", "--max-children", "1"]) == 0
    assert asked == [(str(where), "fastner/io.py",
                      ["fastner.io.x_a__mutmut_2", "fastner.io.x_a__mutmut_3"])]
    assert "fastner/io.py: 3 of 3 killed (100%), 1 equivalent left out" in capsys.readouterr().out

    (where / "fastner" / "io.py").write_bytes(b"# another version\n")
    with pytest.raises(SystemExit, match="changed since its run"):
        mutate.main(["fastner/io.py", "--survivors"])
    with pytest.raises(SystemExit, match="no earlier run"):
        mutate.main(["fastner/tags.py", "--survivors"])
