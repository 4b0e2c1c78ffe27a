"""The Omniverse Farm emulator's request models hold the constraints of the real
2.0.42 spec (shared/reference/omniverse-farm-openapi-2.0.42.json): lengths, bounds,
nullability and types, field by field. Checked twice: the emulator's own OpenAPI schema
against the spec, and its answers to requests generated from the spec (a value the
spec forbids is a 422, one it allows is not)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SHARED

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the emulators extra is not installed")

from farm_adapters.testing.emulators._server import BackgroundServer  # noqa: E402
from farm_adapters.testing.emulators.ovfarm import create_app  # noqa: E402

SPEC_PATH = SHARED / "reference" / "omniverse-farm-openapi-2.0.42.json"
pytestmark = pytest.mark.skipif(
    not SPEC_PATH.exists(), reason=f"{SPEC_PATH} is absent (../shared not checked out)"
)
KEY = "k"


def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text()) if SPEC_PATH.exists() else {"paths": {}}


def _body_routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, schema name) of every route whose body is a named model."""
    routes = []
    for path, ops in spec["paths"].items():
        for op in ops.values():
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = schema.get("schema", {}).get("$ref")
            if ref:
                routes.append((path, ref.rsplit("/", 1)[1]))
    return routes


SPEC = _spec()
BODY_ROUTES = _body_routes(SPEC)


# -- 1. the emulator's schema says what the spec says ----------------------------------


def _shape(schema: dict[str, Any]) -> Any:
    """What a schema constrains, comparable across generators (titles, descriptions
    and defaults dropped; an object with no value schema is an object of anything)."""
    if "anyOf" in schema:
        return sorted((_shape(s) for s in schema["anyOf"]), key=repr)
    if "$ref" in schema:
        return ("ref", schema["$ref"].rsplit("/", 1)[1])
    if schema.get("contentMediaType") == "application/octet-stream":
        schema = {**schema, "format": "binary"}  # how newer FastAPI spells bytes
    kept = {
        k: v
        for k, v in schema.items()
        if k in ("type", "maxLength", "minLength", "minimum", "maximum", "enum", "format")
    }
    if schema.get("type") == "array":
        kept["items"] = _shape(schema.get("items", {}))
    if schema.get("type") == "object":
        extra = schema.get("additionalProperties", True)
        kept["values"] = "any" if extra in (True, {}) else _shape(extra)
    return sorted(kept.items(), key=repr)


def _constraint_table(spec: dict[str, Any], name: str) -> dict[str, Any]:
    model = spec["components"]["schemas"][name]
    table = {p: _shape(s) for p, s in model.get("properties", {}).items()}
    table["<required>"] = sorted(model.get("required", []))
    return table


@pytest.mark.parametrize("name", sorted({n for _, n in BODY_ROUTES} | {"TaskProgressModel"}))
def test_request_model_constraints_match_the_spec(name: str) -> None:
    ours = create_app(agents=0).openapi()
    real_table = _constraint_table(SPEC, name)
    our_table = _constraint_table(ours, name)
    differences = {
        field: {"spec": real_table.get(field), "emulator": our_table.get(field)}
        for field in real_table.keys() | our_table.keys()
        if real_table.get(field) != our_table.get(field)
    }
    assert not differences, json.dumps(differences, indent=1, default=str)


@pytest.mark.parametrize(
    "path",
    sorted(p for p, ops in SPEC["paths"].items() for op in ops.values() if "parameters" in op),
)
def test_query_and_path_parameters_match_the_spec(path: str) -> None:
    ours = create_app(agents=0).openapi()
    for method, op in SPEC["paths"][path].items():
        real = {p["name"]: _shape(p["schema"]) for p in op["parameters"]}
        mine = {
            p["name"]: _shape(p["schema"])
            for p in ours["paths"][path][method].get("parameters", [])
            if p["name"] != "X-API-KEY"
        }
        assert real == mine, (method, path)


# -- 2. the emulator answers as the spec's models would ---------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with BackgroundServer(create_app(api_key=KEY, agents=0)) as server:
        # No keep-alive: a 500 (cancel of an unknown task) closes the connection.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=server.url, timeout=30, limits=limits) as http:
            yield http


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return dict(SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    return schema


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [_resolve(s) for s in schema.get("anyOf", [schema])]


def _sample(schema: dict[str, Any]) -> Any:
    """A value the schema accepts."""
    branch = next(b for b in _branches(schema) if b.get("type") != "null")
    if "enum" in branch:
        return branch["enum"][0]
    kind = branch.get("type")
    if kind == "object" and "properties" in branch:
        return {k: _sample(branch["properties"][k]) for k in branch.get("required", [])}
    return {"string": "x", "integer": 1, "number": 0.5, "boolean": True, "object": {}}.get(
        str(kind), []
    )


WRONG = {
    "string": {"an": "object"},
    "integer": "not a number",
    "number": "not a number",
    "boolean": "maybe",
    "object": ["a", "list"],
    "array": "a string",
}


def _probes(schema: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(what, value, accepted) for one property: limits, null, types, item types."""
    branches = _branches(schema)
    nullable = any(b.get("type") == "null" for b in branches)
    yield "null", None, nullable
    for branch in (b for b in branches if b.get("type") != "null"):
        kind = branch.get("type")
        if "enum" in branch:
            yield "a value outside the enum", "bogus-value", False
            continue
        if "maxLength" in branch:
            top = branch["maxLength"]
            yield f"{top} characters", "x" * top, True
            yield f"{top + 1} characters", "x" * (top + 1), False
        if "maximum" in branch:
            yield "above the maximum", branch["maximum"] + 1, False
        if "minimum" in branch:
            yield "below the minimum", branch["minimum"] - 1, False
        if kind in WRONG and len(branches) - nullable == 1:
            yield f"not a {kind}", WRONG[kind], False
        if kind == "array":
            items = branch.get("items", {})
            if items.get("type") == "string":
                yield "non-string items", [1, True], False
            elif not items:
                yield "items of any type", [1, "a", {"k": [1]}, None], True
        if kind == "object" and "properties" not in branch:
            yield "values of any type", {"n": 1, "b": False, "l": [1], "o": {"k": None}}, True
        if kind == "object" and "properties" in branch:
            base = _sample(branch)
            for key, sub in branch["properties"].items():
                for what, value, accepted in _probes(sub):
                    yield f"{key}: {what}", {**base, key: value}, accepted


CASES = [
    pytest.param(path, name, field, id=f"{path.split('/management/')[-1]}:{field}")
    for path, name in BODY_ROUTES
    for field in SPEC["components"]["schemas"][name].get("properties", {})
]


@pytest.mark.parametrize(("path", "name", "field"), CASES)
def test_answers_follow_the_spec_field_by_field(
    client: Any, path: str, name: str, field: str
) -> None:
    model = SPEC["components"]["schemas"][name]
    base = _sample(model)
    wrong = []
    for what, value, accepted in _probes(model["properties"][field]):
        answer = client.post(path, json={**base, field: value}, headers={"X-API-KEY": KEY})
        if (answer.status_code != 422) != accepted:
            wrong.append(
                f"{field} = {json.dumps(value)[:60]} ({what}): answered {answer.status_code}, "
                f"the spec {'allows' if accepted else 'rejects (422)'} it"
            )
    assert not wrong, f"POST {path}:\n" + "\n".join(wrong)
