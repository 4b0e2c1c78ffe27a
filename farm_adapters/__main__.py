"""``python -m farm_adapters``: the same as the ``farm-adapters`` command."""

from farm_adapters.cli import main

main()
