"""``python -m phala`` runs the ``phala`` command line."""

from phala.cli.main import app

app()
