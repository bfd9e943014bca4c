"""`python -m ringdrop.cli`, the same as the `ringdrop` command."""

from ringdrop.cli.app import run

run()
