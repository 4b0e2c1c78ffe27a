"""The Blender add-on: a "Render Farm" panel in the Render properties, the
``farm_adapters.submit`` operator, and a job list with stop and restart.

Blender loads it through the small ``farm_adapters_blender`` package written by
``farm-adapters blender install`` (or the zip of ``farm-adapters blender zip``), whose
``register()`` calls :func:`register` here.

The operator takes ``target``, ``frame_start``, ``frame_end``, ``chunk_size``,
``priority``, ``output`` and ``blender``; any argument left out comes from the panel's
settings (the scene's frame range by default), so it also works headless::

    bpy.ops.farm_adapters.submit(target="local", frame_start=1, frame_end=2)

Errors are shown as one-line Blender reports. The job list is refreshed from a timer
that only starts a worker thread (:class:`.submission.JobList`): the UI never waits on
a farm.
"""

# No `from __future__ import annotations`: Blender reads the property annotations.

from typing import Any

import bpy

from ...errors import FarmAdapterError
from ...plugin import Capability
from .job import DEFAULT_OUTPUT
from .submission import JobList, submit_scene

__all__ = ["register", "unregister"]

REFRESH_SECONDS = 2.0
_addon_name = "farm_adapters_blender"
_jobs = JobList()
_seen_version = -1
# Blender keeps pointers into the enum items: they must stay referenced.
_target_items_cache: list[tuple[str, str, str, int]] = []
_targets_error = ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _preferences(context: Any) -> Any:
    addon = context.preferences.addons.get(_addon_name)
    return addon.preferences if addon is not None else None


def _target_items(self: Any, context: Any) -> list[tuple[str, str, str, int]]:
    global _target_items_cache, _targets_error
    from ...config import load_targets

    try:
        config = load_targets()
        items = [
            (t.name, t.name, t.description or f"backend {t.backend}", i)
            for i, t in enumerate(config)
        ]
        _targets_error = ""
    except FarmAdapterError as exc:
        items = [("local", "local", "this machine", 0)]
        _targets_error = _one_line(exc)
    _target_items_cache = items
    return _target_items_cache


def _capabilities(target_name: str) -> frozenset[Capability]:
    """The selected target's capabilities, from its backend class (no connection)."""
    from ... import get_plugin_manager
    from ...config import load_targets

    try:
        target = load_targets().get(target_name)
        return get_plugin_manager().get_backend_class(target.backend).capabilities
    except FarmAdapterError:
        return frozenset()


class FarmAdaptersSettings(bpy.types.PropertyGroup):
    """The panel's settings, saved with the scene."""

    target: bpy.props.EnumProperty(
        name="Target", description="Render target from the targets file", items=_target_items
    )
    use_scene_range: bpy.props.BoolProperty(
        name="Scene Frame Range", description="Render the scene's frame range", default=True
    )
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=1)
    chunk_size: bpy.props.IntProperty(
        name="Chunk Size", description="Frames per farm task", default=1, min=1
    )
    priority: bpy.props.IntProperty(
        name="Priority", description="0 lowest, 100 highest", default=50, min=0, max=100
    )
    output: bpy.props.StringProperty(
        name="Output",
        description="Output pattern as the render node sees it; // is the job's folder",
        default=DEFAULT_OUTPUT,
    )
    last_job_id: bpy.props.StringProperty(name="Last Job", default="")
    last_outputs: bpy.props.StringProperty(
        name="Last Outputs", description="The files the last job writes, one per line"
    )


class FarmAdaptersPreferences(bpy.types.AddonPreferences):
    """Add-on preferences: where each target's render nodes have Blender."""

    bl_idname = _addon_name

    blender_executables: bpy.props.StringProperty(
        name="Farm Blender",
        description=(
            "TARGET=PATH; ... : the blender executable on each target's render nodes. "
            "Targets not listed render with python -m farm_adapters.dcc.blender.render"
        ),
        default="",
    )

    def draw(self, context: Any) -> None:
        self.layout.prop(self, "blender_executables")


class FARM_ADAPTERS_OT_submit(bpy.types.Operator):
    """Send the scene's frames to a render farm target."""

    bl_idname = "farm_adapters.submit"
    bl_label = "Submit to Farm"
    bl_options = {"REGISTER"}

    target: bpy.props.StringProperty(name="Target", default="")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=1)
    chunk_size: bpy.props.IntProperty(name="Chunk Size", default=1, min=1)
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)
    output: bpy.props.StringProperty(name="Output", default=DEFAULT_OUTPUT)
    blender: bpy.props.StringProperty(name="Farm Blender", default="")

    def _arg(self, name: str, fallback: Any) -> Any:
        return getattr(self, name) if self.properties.is_property_set(name) else fallback

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.farm_adapters
        scene = context.scene
        if settings.use_scene_range:
            start, end = scene.frame_start, scene.frame_end
        else:
            start, end = settings.frame_start, settings.frame_end
        target = self._arg("target", settings.target) or "local"
        start = self._arg("frame_start", start)
        end = self._arg("frame_end", end)
        if end < start:
            self.report({"ERROR"}, f"frame range: end {end} is before start {start}")
            return {"CANCELLED"}
        prefs = _preferences(context)
        try:
            result = submit_scene(
                target=target,
                frames=f"{start}-{end}",
                chunk_size=self._arg("chunk_size", settings.chunk_size),
                priority=self._arg("priority", settings.priority),
                output=self._arg("output", settings.output),
                blender=self.blender,
                blender_preference=prefs.blender_executables if prefs else "",
            )
        except FarmAdapterError as exc:
            self.report({"ERROR"}, _one_line(exc))
            return {"CANCELLED"}
        settings.last_job_id = result.job.id
        settings.last_outputs = "\n".join(result.outputs)
        if result.missing:
            self.report(
                {"WARNING"},
                f"{len(result.missing)} external file(s) missing, e.g. {result.missing[0]}",
            )
        self.report(
            {"INFO"},
            f"submitted job {result.job.id} to {target} ({result.tasks} task(s))",
        )
        _jobs.refresh()
        return {"FINISHED"}


class _JobOperator:
    report: Any

    def act(self, backend: Any) -> None:
        raise NotImplementedError

    job_id: bpy.props.StringProperty(name="Job")
    target: bpy.props.StringProperty(name="Target")

    def _backend(self) -> Any:
        from ... import get_plugin_manager
        from ...config import load_targets

        return load_targets().get(self.target).create_backend(get_plugin_manager())

    def execute(self, context: Any) -> set[str]:
        try:
            backend = self._backend()
            try:
                self.act(backend)
            finally:
                backend.close()
        except FarmAdapterError as exc:
            self.report({"ERROR"}, _one_line(exc))
            return {"CANCELLED"}
        _jobs.refresh()
        return {"FINISHED"}


class FARM_ADAPTERS_OT_stop(_JobOperator, bpy.types.Operator):
    """Stop this farm job."""

    bl_idname = "farm_adapters.stop"
    bl_label = "Stop Job"

    def act(self, backend: Any) -> None:
        backend.stop_job(self.job_id)


class FARM_ADAPTERS_OT_restart(_JobOperator, bpy.types.Operator):
    """Run this farm job again."""

    bl_idname = "farm_adapters.restart"
    bl_label = "Restart Job"

    def act(self, backend: Any) -> None:
        backend.restart_job(self.job_id)


class FARM_ADAPTERS_OT_refresh(bpy.types.Operator):
    """Refresh the farm job list now."""

    bl_idname = "farm_adapters.refresh"
    bl_label = "Refresh Jobs"

    def execute(self, context: Any) -> set[str]:
        _jobs.refresh()
        return {"FINISHED"}


class FARM_ADAPTERS_PT_render(bpy.types.Panel):
    """Properties > Render > Render Farm."""

    bl_label = "Render Farm"
    bl_idname = "FARM_ADAPTERS_PT_render"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        settings = context.scene.farm_adapters
        layout.use_property_split = True
        layout.prop(settings, "target")
        if _targets_error:
            layout.label(text=_targets_error, icon="ERROR")
        layout.prop(settings, "use_scene_range")
        col = layout.column(align=True)
        col.enabled = not settings.use_scene_range
        col.prop(settings, "frame_start")
        col.prop(settings, "frame_end")
        layout.prop(settings, "chunk_size")
        layout.prop(settings, "priority")
        layout.prop(settings, "output")
        layout.operator(FARM_ADAPTERS_OT_submit.bl_idname, icon="RENDER_ANIMATION")

        caps = _capabilities(settings.target)
        box = layout.box()
        header = box.row()
        header.label(text="Farm Jobs")
        header.operator(FARM_ADAPTERS_OT_refresh.bl_idname, text="", icon="FILE_REFRESH")
        if _jobs.error:
            box.label(text=_jobs.error, icon="ERROR")
        if not _jobs.rows:
            box.label(text="No jobs submitted from Blender yet")
        for row in _jobs.rows:
            line = box.row(align=True)
            line.label(text=f"{row.name} [{row.target}]")
            line.label(text=f"{row.state.value} {row.progress:.0%}")
            stop = line.row(align=True)
            stop.enabled = row.can_stop
            op = stop.operator(FARM_ADAPTERS_OT_stop.bl_idname, text="", icon="CANCEL")
            op.job_id, op.target = row.id, row.target
            restart = line.row(align=True)
            restart.enabled = row.can_restart
            op = restart.operator(FARM_ADAPTERS_OT_restart.bl_idname, text="", icon="FILE_REFRESH")
            op.job_id, op.target = row.id, row.target
        if Capability.STOP not in caps or Capability.RESTART not in caps:
            box.label(text="This target cannot stop or restart jobs", icon="INFO")


def _tick() -> float:
    """The timer: start a refresh (never wait on it) and redraw when rows changed."""
    global _seen_version
    _jobs.refresh()
    if _jobs.version != _seen_version:
        _seen_version = _jobs.version
        for window in getattr(bpy.context.window_manager, "windows", ()):
            for area in window.screen.areas:
                if area.type == "PROPERTIES":
                    area.tag_redraw()
    return REFRESH_SECONDS


_CLASSES = (
    FarmAdaptersSettings,
    FarmAdaptersPreferences,
    FARM_ADAPTERS_OT_submit,
    FARM_ADAPTERS_OT_stop,
    FARM_ADAPTERS_OT_restart,
    FARM_ADAPTERS_OT_refresh,
    FARM_ADAPTERS_PT_render,
)


def register(addon_name: str = "farm_adapters_blender") -> None:
    """Register the add-on's classes; ``addon_name`` is the add-on module's name
    (preferences are looked up under it)."""
    global _addon_name
    _addon_name = addon_name
    FarmAdaptersPreferences.bl_idname = addon_name
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.farm_adapters = bpy.props.PointerProperty(type=FarmAdaptersSettings)
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=REFRESH_SECONDS, persistent=True)


def unregister() -> None:
    """Undo :func:`register`."""
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    del bpy.types.Scene.farm_adapters
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
