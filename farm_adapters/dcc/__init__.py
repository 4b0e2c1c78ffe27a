"""DCC integrations.

- :mod:`farm_adapters.dcc.blender`: a Blender add-on (a Render properties panel and the
  ``farm_adapters.submit`` operator) and the farm-side render entry point
  ``python -m farm_adapters.dcc.blender.render``.
- :mod:`farm_adapters.dcc.katana`: a bridge that exposes every configured target to
  Katana as a ``FarmAPI.BaseFarmPlugin``, from a resources folder on ``KATANA_RESOURCES``.

Nothing here is imported by ``import farm_adapters``; ``bpy`` is imported only inside
the add-on and the render entry point.
"""
