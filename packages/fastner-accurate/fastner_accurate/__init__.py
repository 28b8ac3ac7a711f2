"""fastner's accurate model, a package of its own so that `pip install fastner` stays
small: ``fastner.load("accurate")``, ``fastner tag --model accurate`` and
``FASTNER_MODEL=accurate`` find it by this module's ``model_path()``."""
import importlib.resources

MODEL_FILE = "fastner-accurate.npz"


def model_path():
    """The model file inside this installed package."""
    return str(importlib.resources.files(__name__) / MODEL_FILE)
