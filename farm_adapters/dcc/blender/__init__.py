"""Blender integration: the add-on, the job it submits, and the farm-side renderer.

- :mod:`.job` builds the :class:`~farm_adapters.models.JobRequest` (pure Python);
- :mod:`.staging` saves a self-contained copy of the open .blend (needs ``bpy``);
- :mod:`.addon` is the add-on itself: panel, operators, job list (needs ``bpy``);
- :mod:`.render` is what a render node runs when it has no ``blender`` executable:
  ``python -m farm_adapters.dcc.blender.render FILE -o PATTERN -s START -e END``;
- :mod:`.install` writes the add-on into a Blender scripts folder, or a zip.

Importing this package does not import ``bpy``.
"""

#: The add-on's module name in Blender (the folder written by ``farm-adapters blender
#: install``).
ADDON_MODULE = "farm_adapters_blender"
