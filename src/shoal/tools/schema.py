"""From a tool method's signature and docstring to a validator, a JSON schema and XML usage."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from shoal.tools.base import ToolContext, ToolHandler, ToolSpec

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\w+)\s*(?:\([^)]*\))?:\s*(.*)$")


@dataclass(frozen=True, slots=True)
class ToolFunction:
    """One callable tool function: its name, docs, argument model and bound handler."""

    name: str
    description: str
    terminating: bool
    args_model: type[BaseModel]
    handler: ToolHandler
    takes_context: bool
    text_fields: frozenset[str]
    xml_example: str

    def parameters_schema(self) -> dict[str, Any]:
        # Generated once per argument model (it is immutable); every prompt gets its own copy.
        schema: dict[str, Any] = clone_json(_parameters_schema(self.args_model))
        return schema

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema(),
            },
        }


def clone_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): several times cheaper than
    ``copy.deepcopy``, which a run would otherwise pay for every tool schema of every prompt."""
    if isinstance(value, dict):
        return {key: clone_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone_json(item) for item in value]
    return value


@functools.lru_cache(maxsize=256)
def _parameters_schema(args_model: type[BaseModel]) -> dict[str, Any]:
    schema = args_model.model_json_schema()
    _drop_titles(schema)
    schema.setdefault("properties", {})
    schema["type"] = "object"
    return schema


def build_function(name: str, spec: ToolSpec, handler: ToolHandler) -> ToolFunction:
    signature = inspect.signature(handler)
    hints = typing.get_type_hints(handler, include_extras=True)
    summary, param_docs = parse_docstring(inspect.getdoc(handler) or "")
    fields: dict[str, Any] = {}
    text_fields: set[str] = set()
    takes_context = False
    for pname, param in signature.parameters.items():
        annotation = hints.get(pname, Any)
        if annotation is ToolContext or pname == "ctx":
            takes_context = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool function {name}: *args/**kwargs are not supported")
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, Field(default, description=param_docs.get(pname)))
        if _is_text(annotation):
            text_fields.add(pname)
    model = create_model(
        f"{name}_arguments",
        __config__=ConfigDict(extra="forbid", coerce_numbers_to_str=True),
        **fields,
    )
    function = ToolFunction(
        name=name,
        description=spec.description or summary or name,
        terminating=spec.terminating,
        args_model=model,
        handler=handler,
        takes_context=takes_context,
        text_fields=frozenset(text_fields),
        xml_example="",
    )
    example = spec.xml_example or render_xml_example(function)
    return dataclasses.replace(function, xml_example=example)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """``(description, {param: description})`` from a Google-style docstring."""
    lines = doc.splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if not in_args:
            description.append(line)
            continue
        match = _ARG_LINE.match(line)
        if match and (current is None or len(line) - len(line.lstrip()) <= 4):
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif line.strip() and current is not None and line.startswith(" "):
            params[current] = f"{params[current]} {line.strip()}"
        elif not line.strip():
            continue
        else:
            in_args = False
            description.append(line)
    return "\n".join(description).strip(), params


def render_xml_example(function: ToolFunction) -> str:
    """A usage example in the XML calling format, with placeholder values."""
    lines = ["<function_calls>", f'<invoke name="{function.name}">']
    for pname, info in function.args_model.model_fields.items():
        if not info.is_required():
            continue
        lines.append(f'<parameter name="{pname}">{_placeholder(info.annotation)}</parameter>')
    lines += ["</invoke>", "</function_calls>"]
    return "\n".join(lines)


def _placeholder(annotation: Any) -> str:
    base = _unwrap(annotation)
    if base is bool:
        return "true"
    if base in (int, float):
        return "1"
    origin = get_origin(base)
    if base in (list, tuple, set) or origin in (list, tuple, set):
        return json.dumps(["…"])
    if base is dict or origin is dict:
        return json.dumps({"key": "value"})
    return "…"


def _unwrap(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrap(rest[0]) if len(rest) == 1 else annotation
    return annotation


def _is_text(annotation: Any) -> bool:
    return _unwrap(annotation) is str


def _drop_titles(node: Any) -> None:
    if isinstance(node, dict):
        title = node.get("title")
        if isinstance(title, str):
            del node["title"]
        for value in node.values():
            _drop_titles(value)
    elif isinstance(node, list):
        for value in node:
            _drop_titles(value)
