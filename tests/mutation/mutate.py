"""make mutate: mutation testing of the modules that hold fastner's promises, with mutmut 3.

    python tests/mutation/mutate.py [MODULE ...] [--max-children N] [--report | --survivors]

For each module (default: all of MODULES), a tree of its own under build/mutate/
holds the package as it installs (service/ as fastner/service, models/ as
fastner/models, so every import names the mutated files), the tests, and a
[tool.mutmut] table that mutates that one module and selects its tests only.
mutmut runs there; its verdicts are read from the mutants' .meta files. Mutants
listed in tests/mutation/equivalent.txt (one per line: name, then `#` and why it
changes no behaviour) are left out of the count. Prints one line per module,

    fastner/io.py: 41 of 44 killed (93%)

then the survivors by name (`cd build/mutate/SLUG && mutmut show NAME` shows one), and
exits 1 when a module is under TARGET. ``--survivors`` runs again, in the stage of the last
run, only the mutants that were not killed, against the tests as they are now (after
writing tests for them; the module itself must be unchanged, or its mutants' names would
not be the same).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = os.path.join(ROOT, "build", "mutate")
EQUIVALENT = os.path.join(ROOT, "tests", "mutation", "equivalent.txt")
TARGET = 0.90

# module (as in the repository) -> the tests that guard it
MODULES = {
    "fastner/io.py": ["tests/test_io.py", "tests/test_modelfile.py"],
    "fastner/modelfile.py": ["tests/test_modelfile.py", "tests/test_model.py",
                             "tests/test_ensemble.py", "tests/test_two_stage.py"],
    "fastner/train.py": ["tests/test_train.py", "tests/test_two_stage.py",
                         "tests/test_cli_help.py"],
    # the job on an in-process cluster of threads; test_corpus.py's clusters of processes
    # (killed workers) stay in make test, but cost seconds per mutant
    "fastner/corpus.py": ["tests/test_corpus_partitions.py"],
    "fastner/conll.py": ["tests/test_conll.py"],
    "fastner/cli.py": ["tests/test_cli.py", "tests/test_cli_help.py", "tests/test_ensemble.py",
                       "tests/test_model_names.py"],
    "fastner/evaluate.py": ["tests/test_evaluate.py"],
    "fastner/tags.py": ["tests/test_tags.py", "tests/test_conll.py", "tests/test_evaluate.py"],
    "fastner/tokenize.py": ["tests/test_tokenize.py"],
    "fastner/settings.py": ["tests/test_settings.py"],
    "service/api.py": ["tests/test_api_messages.py", "tests/test_api.py", "tests/test_service.py"],
    "service/errors.py": ["tests/test_errors.py", "tests/test_service.py"],
}
KILLED = {1, 3}             # a test failed (3: pytest's internal error on the mutant)
TIMEOUT = {36, 24, -24, 152, 255}
# the forked test run died (mutmut reports "segfault"): the mutant was noticed, but a
# crash is worth a look (a kernel must refuse bad arguments), so these are listed
CRASHED = {-11, -9, -6}


def staged_path(module):
    """Where ``module`` sits in a stage: service/ and models/ inside the package."""
    for folder in ("service", "models"):
        if module.startswith(folder + "/"):
            return "fastner/" + module
    return module


def slug(module):
    """The folder of ``module``'s stage under build/mutate/."""
    return module.replace("/", "_").removesuffix(".py")


def stage(module):
    """A fresh tree for ``module``'s run; its path."""
    where = os.path.join(STAGES, slug(module))
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.c", ".*.tmp-*")
    shutil.copytree(os.path.join(ROOT, "fastner"), os.path.join(where, "fastner"), ignore=ignore)
    for folder in ("service", "models"):
        shutil.copytree(os.path.join(ROOT, folder), os.path.join(where, "fastner", folder),
                        ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(where, "tests"),
                    ignore=shutil.ignore_patterns("__pycache__", "mutation"))
    # the checkout's layout too, for tests that read its files (the shipped model's card,
    # the docs' settings table)
    os.symlink(os.path.join(where, "fastner", "models"), os.path.join(where, "models"))
    shutil.copytree(os.path.join(ROOT, "docs"), os.path.join(where, "docs"))
    for name in ("README.md", "Makefile", "setup.py"):
        shutil.copy2(os.path.join(ROOT, name), where)
    write_config(where, module)
    return where


def write_config(where, module):
    """The stage's pyproject.toml: the project's, and a [tool.mutmut] table that mutates
    ``module`` and selects its tests (MODULES)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    tests = ", ".join(json.dumps(t) for t in MODULES[module])
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["fastner"]\n'
        f'only_mutate = ["{staged_path(module)}"]\n'
        'also_copy = ["tests", "models", "docs", "README.md", "Makefile", "setup.py", '
        '"pyproject.toml"]\n'
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]\n'
        # a mutant whose tests run past (clean time + 1 s) × 6 CPU seconds hangs (killed by
        # timeout); mutmut's default, × 30, let each hanging tag_corpus mutant burn minutes
        "timeout_multiplier = 3.0\n"
        "use_setproctitle = false\n")
    with open(os.path.join(where, "pyproject.toml"), "w", encoding="utf-8") as f:
        f.write(pyproject)


def equivalents():
    """{mutant name: reason} from the checked-in list."""
    found = {}
    if os.path.exists(EQUIVALENT):
        with open(EQUIVALENT, encoding="utf-8") as f:
            for line in f:
                name, _, why = line.partition("#")
                if name.strip():
                    found[name.strip()] = why.strip()
    return found


def verdicts(where, module):
    """{mutant name: exit code} from mutmut's .meta file of ``module``."""
    meta = os.path.join(where, "mutants", staged_path(module) + ".meta")
    with open(meta, encoding="utf-8") as f:
        return json.load(f)["exit_code_by_key"]


def mutmut_run(where, module, max_children, names=()):
    """``mutmut run`` in the stage ``where`` (for ``names`` only, if given)."""
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNER_MODEL", "PYTHONPATH")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([mutmut, "run", "--max-children", str(max_children), *names],
                          cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"mutate: mutmut failed on {module} (in {where}):\n{done.stderr[-3000:]}")
    return verdicts(where, module)


def run(module, max_children):
    where = stage(module)
    return where, mutmut_run(where, module, max_children)


def refresh_package(where, module):
    """Copy today's package files, all but the mutated ``module``, over the stage's
    and over mutmut's copy of it (mutants/), which mutmut does not refresh itself."""
    skip = staged_path(module)
    for folder, staged in (("fastner", "fastner"), ("service", "fastner/service"),
                           ("models", "fastner/models")):
        for root, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".c") or ".tmp-" in name:
                    continue
                source = os.path.join(root, name)
                relative = os.path.join(staged, os.path.relpath(source, os.path.join(ROOT, folder)))
                if relative == skip:
                    continue
                for base in (where, os.path.join(where, "mutants")):
                    target = os.path.join(base, relative)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(source, target)


def rerun_survivors(module, max_children, accepted):
    """Run the last run's surviving mutants of ``module`` again, with today's tests."""
    where = os.path.join(STAGES, slug(module))
    if not os.path.exists(os.path.join(where, "mutants", staged_path(module) + ".meta")):
        sys.exit(f"mutate: {module} has no earlier run in {where}; run it in full first")
    with open(os.path.join(ROOT, module), "rb") as now, \
            open(os.path.join(where, staged_path(module)), "rb") as then:
        if now.read() != then.read():
            sys.exit(f"mutate: {module} changed since its run in {where} (its mutants' names "
                     f"may have changed too); run it in full")
    names = [name for name, code in verdicts(where, module).items()
             if name not in accepted and code not in KILLED | TIMEOUT | CRASHED]
    if not names:
        return where, verdicts(where, module)
    # today's code around the module (today's tests may use it), today's tests, and
    # which tests reach which function measured again
    refresh_package(where, module)
    for tests in (os.path.join(where, "tests"), os.path.join(where, "mutants", "tests")):
        shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(where, "tests"),
                    ignore=shutil.ignore_patterns("__pycache__", "mutation"))
    write_config(where, module)                  # today's test selection too
    stats = os.path.join(where, "mutants", "mutmut-stats.json")
    if os.path.exists(stats):
        os.unlink(stats)
    return where, mutmut_run(where, module, max_children, names)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("modules", nargs="*", default=list(MODULES), metavar="MODULE")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--report", action="store_true",
                      help="count the verdicts of the last run in build/mutate/ without running")
    what.add_argument("--survivors", action="store_true",
                      help="run only the last run's surviving mutants again, with today's tests")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"not a module under mutation testing: {', '.join(unknown)} "
                 f"(choose from {', '.join(MODULES)})")
    accepted = equivalents()
    lines, survivors, crashes, short = [], [], [], False
    for module in args.modules:
        if args.report:
            where = os.path.join(STAGES, slug(module))
            if not os.path.exists(os.path.join(where, "mutants", staged_path(module) + ".meta")):
                print(f"{module}: not run", flush=True)
                continue
            codes = verdicts(where, module)
        elif args.survivors:
            where, codes = rerun_survivors(module, args.max_children, accepted)
        else:
            where, codes = run(module, args.max_children)
        counted = {name: code for name, code in codes.items() if name not in accepted}
        killed = sum(code in KILLED | TIMEOUT | CRASHED for code in counted.values())
        crashes += [(module, name) for name, code in counted.items() if code in CRASHED]
        share = killed / len(counted) if counted else 1.0
        short |= share < TARGET
        line = f"{module}: {killed} of {len(counted)} killed ({share:.0%})"
        excluded = len(codes) - len(counted)
        if excluded:
            line += f", {excluded} equivalent left out"
        print(line, flush=True)
        lines.append(line)
        survivors += [(module, where, name, code) for name, code in sorted(counted.items())
                      if code not in KILLED | TIMEOUT | CRASHED]
    if survivors:
        print("\nnot killed (exit code: 0 survived, 33 or 5 no test ran it, None not checked):")
        for module, where, name, code in survivors:
            print(f"  {name}  [{code}]  (cd {os.path.relpath(where, ROOT)} && mutmut show {name})")
    if crashes:
        print("\nkilled by a crash of the test run (look at each):")
        for module, name in crashes:
            print(f"  {name}")
    print("\n" + "\n".join(lines))
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
