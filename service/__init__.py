"""fastner's HTTP tagging service (Flask, run by gunicorn)."""
