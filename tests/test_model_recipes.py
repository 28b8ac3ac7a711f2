"""The shipped models' recipes (make model-fast, make model-accurate) run end to end on
the tiny fixtures, and the accurate model's package builds into a wheel that fastner
finds by name once installed."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
pytestmark = pytest.mark.slow


def make(*args, cwd=ROOT):
    done = subprocess.run(["make", "--no-print-directory", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    where = tmp_path_factory.mktemp("recipes")
    data = where / "data"
    data.mkdir()
    shutil.copy(os.path.join(FIXTURES, "tiny_train.txt"), data / "train.txt")
    shutil.copy(os.path.join(FIXTURES, "tiny_dev.txt"), data / "valid.txt")
    shutil.copy(os.path.join(FIXTURES, "tiny_dev.txt"), data / "test.txt")
    fast = where / "fast" / "fast.npz"
    accurate = where / "pkg" / "fastner_accurate" / "fastner-accurate.npz"
    shutil.copytree(os.path.join(ROOT, "packages", "fastner-accurate"), where / "pkg",
                    ignore=shutil.ignore_patterns("*.npz", "*.json", "__pycache__"))
    make("model-fast", f"DATA={data}", "FAST_EPOCHS=2", f"FAST_MODEL={fast}")
    make("model-accurate", f"DATA={data}", "ACCURATE_EPOCHS=2", f"FIRST_STAGE={fast}",
         f"ACCURATE_MODEL={accurate}", f"MEMBERS_DIR={where / 'members'}")
    return where, fast, accurate


def test_the_fast_recipe_is_a_final_fit_on_train_and_valid(built):
    _, fast, _ = built
    with open(str(fast)[:-4] + ".json", encoding="utf-8") as f:
        card = json.load(f)
    assert card["train_config"]["patience"] == 0 and card["epochs_run"] == 2
    assert card["best_epoch"] == 2                   # the last epoch, not the best-scoring
    assert set(card["data"]) == {"train.txt", "valid.txt", "test.txt"}
    assert "test" in card and card["dev_in_training_data"] is True


def test_the_accurate_recipe_is_an_ensemble_of_second_stages_over_the_fast_model(built):
    where, fast, accurate = built
    with open(str(accurate)[:-4] + ".json", encoding="utf-8") as f:
        card = json.load(f)
    assert card["model_config"]["first_stage"]["file"] == "fast.npz"
    assert card["train_config"]["features"] == "caps:5,docvote:5"
    assert [m["seed"] for m in card["ensemble_of"]] == [0, 1] and "test" in card
    with open(where / "members" / "member.s0.json", encoding="utf-8") as f:
        assert json.load(f)["model_config"]["hidden"] * 2 == card["model_config"]["hidden"]


def test_the_accurate_package_installs_and_loads_by_name(built):
    where, _, _ = built
    wheels = where / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(wheels), str(where / "pkg")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = os.listdir(wheels)
    assert wheel.startswith("fastner_accurate-0.2.0-py3-none-any")
    import zipfile
    with zipfile.ZipFile(wheels / wheel) as z:
        files = {n for n in z.namelist() if n.startswith("fastner_accurate/")}
    assert files == {"fastner_accurate/__init__.py", "fastner_accurate/fastner-accurate.npz",
                     "fastner_accurate/fastner-accurate.json", "fastner_accurate/fast.npz"}
    site = where / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(site), str(wheels / wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    script = ("import fastner; nlp = fastner.load('accurate'); "
              "print(nlp.name, len(nlp('Maria Lopez met Tom Baker in Paris .').ents) >= 0)")
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("FASTNER_MODEL", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(where))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["fastner-accurate", "True"]
