"""The built-in backends, installed as ``farm_adapters.plugins.<name>``.

Each one is registered through the ``farm_adapters`` entry-point group exactly as a
studio package registers its own.
"""
