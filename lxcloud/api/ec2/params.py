"""The Query protocol's flattened parameters, read with EC2's validation errors.

EC2 flattens lists and structures into dotted names: `InstanceId.1`, `InstanceId.2`;
`TagSpecification.1.ResourceType`, `TagSpecification.1.Tag.1.Key`; `Filter.1.Name`,
`Filter.1.Value.1`; `Placement.AvailabilityZone`. `Params` turns them back into strings, ints,
bools, lists and nested dicts, raising `Ec2Error` (MissingParameter / InvalidParameterValue)
with EC2's wording when a value is absent or malformed.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from lxcloud.api.ec2.errors import Ec2Error

# The reader's methods are named like the builtins (as EC2 SDKs name the types); these aliases keep
# annotations inside the class unambiguous.
_Str = builtins.str
_Int = builtins.int
_Bool = builtins.bool
_List = builtins.list

Tree = dict[_Str, Any]


def missing(name: _Str) -> Ec2Error:
    return Ec2Error("MissingParameter", f"The request must contain the parameter {name}")


def invalid(name: _Str, value: object, expected: _Str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", f"Invalid value '{value}' for {name}. {expected}")


class Params:
    """Read access to one request's parameters; every accessor validates what it returns."""

    def __init__(self, raw: Mapping[_Str, _Str]) -> None:
        self.raw: dict[_Str, _Str] = dict(raw)

    def has(self, name: _Str) -> _Bool:
        """True when `name` or any `name.…` parameter is present."""
        prefix = name + "."
        return name in self.raw or any(k.startswith(prefix) for k in self.raw)

    def str(self, name: _Str, required: _Bool = False, default: _Str | None = None) -> _Str | None:
        """A string parameter; an empty value counts as given."""
        if name in self.raw:
            return self.raw[name]
        if required:
            raise missing(name)
        return default

    def req(self, name: _Str) -> _Str:
        """A required string parameter (typed as `str`, never None)."""
        value = self.str(name, required=True)
        assert value is not None
        return value

    def int(self, name: _Str, min: _Int | None = None, max: _Int | None = None, *,
            required: _Bool = False, default: _Int | None = None) -> _Int | None:
        """An integer parameter within [min, max] when those are given."""
        text = self.str(name, required=required)
        if text is None:
            return default
        try:
            value = _Int(text.strip())
        except ValueError:
            raise invalid(name, text, "Expected an integer.") from None
        if (min is not None and value < min) or (max is not None and value > max):
            bounds = f"between {min} and {max}" if min is not None and max is not None else \
                f"at least {min}" if min is not None else f"at most {max}"
            raise invalid(name, text, f"It must be {bounds}.")
        return value

    def bool(self, name: _Str, default: _Bool = False) -> _Bool:
        """A boolean parameter: `true` or `false`, any case."""
        text = self.str(name)
        if text is None:
            return default
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise invalid(name, text, "Expected 'true' or 'false'.")
        return lowered == "true"

    def dry_run(self) -> _Bool:
        """The `DryRun` flag."""
        return self.bool("DryRun")

    def list(self, name: _Str, required: _Bool = False) -> _List[_Str]:
        """`name.1`, `name.2` … as a list ordered by index (numerically)."""
        indexed: _List[tuple[_Int, _Str]] = []
        prefix = name + "."
        for key, value in self.raw.items():
            if key.startswith(prefix):
                index = key[len(prefix):]
                if not index.isdigit():
                    continue  # a struct list under the same prefix is struct_list's business
                indexed.append((_Int(index), value))
        if not indexed and required:
            raise missing(f"{name}.1")
        return [v for _, v in sorted(indexed, key=lambda p: p[0])]

    def struct(self, name: _Str) -> Tree:
        """`name.A`, `name.B.C` … as a nested dict (lists inside become Python lists)."""
        node = _convert(self._tree(name), name)
        if not isinstance(node, dict):
            raise invalid(name, "…", "Expected a structure, got a list.")
        return node

    def struct_list(self, name: _Str) -> _List[Any]:
        """`name.1.Field`, `name.1.Sub.2.Key` … as a list of nested dicts, ordered by index."""
        tree = self._tree(name)
        if not tree:
            return []
        node = _convert(tree, name)
        if not isinstance(node, list):
            raise invalid(name, "…", f"Expected {name}.N with N a number.")
        return node

    def filters(self) -> dict[_Str, _List[_Str]]:
        """`Filter.N.Name` + `Filter.N.Value.M` as {name: [values]}; repeated names merge."""
        out: dict[_Str, _List[_Str]] = {}
        for i, item in enumerate(self.struct_list("Filter"), start=1):
            if not isinstance(item, dict) or not isinstance(item.get("Name"), _Str) or not item["Name"]:
                raise missing(f"Filter.{i}.Name")
            values = item.get("Value", [])
            if not isinstance(values, _List) or not all(isinstance(v, _Str) for v in values):
                raise invalid(f"Filter.{i}.Value", "…", "Expected Filter.N.Value.M.")
            out.setdefault(item["Name"], []).extend(values)
        return out

    def _tree(self, name: _Str) -> Tree:
        """The raw parameters under `name.` as a tree of dicts keyed by dotted components."""
        prefix = name + "."
        root: Tree = {}
        for key, value in self.raw.items():
            if key.startswith(prefix):
                _insert(root, key[len(prefix):].split("."), value, key)
        return root


def _insert(node: Tree, path: _List[_Str], value: _Str, full: _Str) -> None:
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise invalid(full, value, "A parameter cannot be both a value and a structure.")
        node = child
    if not path[-1] or isinstance(node.get(path[-1]), dict):
        raise invalid(full, value, "A parameter cannot be both a value and a structure.")
    node[path[-1]] = value


def _convert(node: Any, where: _Str) -> Any:
    """Dicts whose keys are all numbers become lists ordered by number, recursively."""
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_convert(node[k], f"{where}.{k}") for k in sorted(node, key=_Int)]
    return {k: _convert(v, f"{where}.{k}") for k, v in node.items()}
