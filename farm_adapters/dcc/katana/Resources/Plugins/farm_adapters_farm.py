"""farm-adapters' render targets as Katana render farm plug-ins.

Katana imports this file from ``<dir>/Plugins`` when ``<dir>`` (printed by
``farm-adapters katana path``) is on ``KATANA_RESOURCES``. farm-adapters must be
importable from Katana's Python. The targets come from the usual targets file
(``$FARM_ADAPTERS_CONFIG``, ``./farm-adapters.toml``, the user config directory).
"""

from farm_adapters.dcc.katana.bridge import build_registry

PluginRegistry = build_registry()
