"""``python -m ma2ml`` runs the command line."""

from ma2ml.cli import app

app(prog_name="ma2ml")
