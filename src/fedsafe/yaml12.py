"""The project's one YAML reader and writer: PyYAML's safe loader and dumper with YAML 1.2 floats, so that
``1e-3`` is a number (YAML 1.1, PyYAML's default, reads it as a string) and a string that looks like one is written
quoted (it reads back as the string). A mapping that names one key twice is an error, not the last value kept.

>>> read_yaml("lr: 1e-3")
{'lr': 0.001}
>>> dump_yaml({"name": "1e-3"})
"name: '1e-3'\\n"
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["DuplicateKeyError", "YAMLError", "dump_yaml", "read_yaml"]

YAMLError = yaml.YAMLError

_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+][0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that resolves plain scalars as :class:`_Loader` reads them (a string that is a YAML 1.2
    float is quoted)."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (PyYAML would keep the last silently)."""


def _no_duplicate_keys(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in first:
            raise DuplicateKeyError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                    f"{first[key] + 1})")
        first[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", _no_duplicate_keys)


def read_yaml(text: str) -> Any:
    """Parse YAML with :class:`_Loader` (safe; YAML 1.2 floats; DuplicateKeyError on a key named twice)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader


def dump_yaml(data: Any) -> str:
    """``data`` as block YAML in its own key order, every scalar read back as written by :func:`read_yaml`."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)
