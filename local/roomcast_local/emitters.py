"""The emitters' contract modules, generated from docs/asyncapi.yaml's bus channel (`make emitters`).

Both emitters (emitters/python, emitters/typescript) validate and type what they publish with what the document
says roomcast accepts: each detail-type's JSON schema, its frame rule (`x-roomcast-frame`) and, for every
detail-type but `Emit` (which is `to(room).emit(event, data)`), a typed call. A detail-type added to the document
is a call of both emitters once this is run. tests/test_emitters.py checks the committed files are this output."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
PYTHON = ROOT / "emitters" / "python" / "src" / "roomcast_emitter" / "contract.py"
TYPESCRIPT = ROOT / "emitters" / "typescript" / "src" / "contract.ts"
# Bound by the company emitter, not passed to each call; `Emit` is `to(room).emit(event, data)`.
BOUND = "companyId"
ROOM_CALL = "Emit"
HEADER = "Generated from docs/asyncapi.yaml by `make emitters` (local/roomcast_local/emitters.py): do not edit."


def _resolved(value: Any, components: dict[str, Any]) -> Any:
    """The schema with every `#/components/schemas/...` reference replaced by what it names."""
    if isinstance(value, dict):
        reference = value.get("$ref")
        if isinstance(reference, str):
            return _resolved(components[reference.rsplit("/", 1)[-1]], components)
        return {key: _resolved(inner, components) for key, inner in value.items()}
    if isinstance(value, list):
        return [_resolved(inner, components) for inner in value]
    return value


def details(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Detail-type -> {schema, frame, summary}, from the bus channel's messages."""
    components = document["components"]["schemas"]
    found: dict[str, dict[str, Any]] = {}
    for name, message in sorted(document["channels"]["backend"]["messages"].items()):
        schema = _resolved(message["payload"], components)
        found[name] = {"schema": schema, "frame": message.get("x-roomcast-frame"), "summary": message["summary"]}
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _nullable(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A schema and whether null is allowed (pydantic writes `X | None` as anyOf [X, null])."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1:
            return rest[0], True
    return schema, False


PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
TS_TYPES = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}


def _py_type(schema: dict[str, Any]) -> str:
    inner, nullable = _nullable(schema)
    kind = inner.get("type")
    if "enum" in inner:
        text = "Literal[" + ", ".join(json.dumps(value) for value in inner["enum"]) + "]"
    elif kind == "object":
        text = "dict[str, Any]"
    elif kind == "array":
        text = "list[Any]"
    else:
        text = PY_TYPES.get(str(kind), "Any")
    return f"{text} | None" if nullable else text


def _ts_type(schema: dict[str, Any]) -> str:
    inner, nullable = _nullable(schema)
    kind = inner.get("type")
    if "enum" in inner:
        text = " | ".join(json.dumps(value) for value in inner["enum"])
    elif kind == "object":
        text = "Record<string, unknown>"
    elif kind == "array":
        text = "unknown[]"
    else:
        text = TS_TYPES.get(str(kind), "unknown")
    return f"{text} | null" if nullable else text


def _fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(name, schema, required) of a detail's fields but the bound company, required ones first."""
    required = set(schema.get("required", []))
    fields = [(name, field, name in required) for name, field in schema["properties"].items() if name != BOUND]
    return sorted(fields, key=lambda entry: not entry[2])


def _python_json(value: Any) -> str:
    """A JSON value as Python reads it at import: the JSON text itself, readable and diffable."""
    text = json.dumps(value, indent=4)
    assert '"""' not in text
    return f'json.loads(\n    r"""\n{text}\n"""\n)'


def python(document: dict[str, Any]) -> str:
    found = details(document)
    lines = [
        '"""The roomcast contract this emitter checks and types what it publishes with.',
        "",
        f'{HEADER}"""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "from abc import ABC, abstractmethod",
        "from typing import Any, Literal, NotRequired, TypedDict",
        "",
        f"DEFAULT_BUS = {json.dumps(document['channels']['backend']['address'])}",
        "",
        "# Detail-type -> the JSON schema of its detail, as roomcast validates it.",
        "SCHEMAS: dict[str, dict[str, Any]] = "
        + _python_json({name: entry["schema"] for name, entry in found.items()}),
        "",
        "# Detail-type -> what of the detail must fit a WebSocket frame (x-roomcast-frame).",
        "FRAMES: dict[str, dict[str, Any]] = "
        + _python_json({name: entry["frame"] for name, entry in found.items() if entry["frame"]}),
    ]
    for name, entry in found.items():
        lines += ["", "", f"class {name}Detail(TypedDict):", f'    """{entry["summary"]}"""', ""]
        for field, schema, required in [(BOUND, entry["schema"]["properties"][BOUND], True), *_fields(entry["schema"])]:
            kind = _py_type(schema)
            lines.append(f"    {field}: {kind if required else f'NotRequired[{kind}]'}")
    lines += [
        "",
        "",
        "class TypedCalls(ABC):",
        '    """One call per detail-type but Emit, keyword arguments in snake_case; each returns the event id."""',
        "",
        "    @abstractmethod",
        "    def put(self, detail_type: str, detail: dict[str, Any]) -> str:",
        '        """Validate, check the frame rule, and put one event; its EventBridge id."""',
    ]
    for name, entry in found.items():
        if name == ROOM_CALL:
            continue
        fields = _fields(entry["schema"])
        arguments = ", ".join(
            f"{_snake(field)}: {_py_type(schema)}" + ("" if required else " = None")
            for field, schema, required in fields
        )
        mapping = ", ".join(f'"{field}": {_snake(field)}' for field, _, _ in fields)
        lines += [
            "",
            f"    def {_snake(name)}(self, *, {arguments}) -> str:",
            f'        """{entry["summary"]}"""',
            f'        return self.put("{name}", {{{mapping}}})',
        ]
    return "\n".join(lines) + "\n"


def typescript(document: dict[str, Any]) -> str:
    found = details(document)
    lines = [
        f"// The roomcast contract this emitter checks and types what it publishes with. {HEADER}",
        "",
        f"export const DEFAULT_BUS = {json.dumps(document['channels']['backend']['address'])};",
        "",
        "/** Detail-type -> the JSON schema of its detail, as roomcast validates it. */",
        "export const SCHEMAS: Record<DetailType, Record<string, unknown>> = "
        + json.dumps({name: entry["schema"] for name, entry in found.items()}, indent=2)
        + ";",
        "",
        "/** Detail-type -> what of the detail must fit a WebSocket frame (x-roomcast-frame). */",
        "export const FRAMES: Partial<Record<DetailType, FrameRule>> = "
        + json.dumps({name: entry["frame"] for name, entry in found.items() if entry["frame"]}, indent=2)
        + ";",
        "",
        "export interface FrameRule {",
        "  maxBytes: number;",
        "  shape: Record<string, unknown>;",
        "}",
        "",
        "export type DetailType = " + " | ".join(json.dumps(name) for name in found) + ";",
    ]
    for name, entry in found.items():
        lines += ["", f"/** {entry['summary']} */", f"export interface {name}Detail {{"]
        for field, schema, required in [(BOUND, entry["schema"]["properties"][BOUND], True), *_fields(entry["schema"])]:
            lines.append(f"  {field}{'' if required else '?'}: {_ts_type(schema)};")
        lines.append("}")
    lines += [
        "",
        "/** One call per detail-type but Emit, each resolving to the event id. */",
        "export abstract class TypedCalls {",
        "  /** Validate, check the frame rule, and put one event; its EventBridge id. */",
        "  protected abstract put(detailType: DetailType, detail: Record<string, unknown>): Promise<string>;",
    ]
    for name, entry in found.items():
        if name == ROOM_CALL:
            continue
        lines += [
            "",
            f"  /** {entry['summary']} */",
            f'  {_camel(name)}(detail: Omit<{name}Detail, "{BOUND}">): Promise<string> {{',
            f'    return this.put("{name}", {{ ...detail }});',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render() -> dict[Path, str]:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return {PYTHON: python(document), TYPESCRIPT: typescript(document)}


def main() -> None:
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
