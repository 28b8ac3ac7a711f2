"""fastner's HTTP tagging service (Flask, run by gunicorn), installed as ``fastner.service``."""
import sys

GUNICORN_CONFIG = "python:fastner.service.gunicorn_conf"
APP = "fastner.service.app:create_app()"


def gunicorn_argv(*extra):
    """The command that runs the service under gunicorn with fastner's settings;
    ``fastner serve``, the tests and the load script all start this one."""
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, *extra, APP]
