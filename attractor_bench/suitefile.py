"""Reading a suite file as untrusted text, before `config` gives it meaning.

A suite file comes from anywhere (a colleague, a paper's artefact, a pull request), so reading it
is bounded and strict:

- at most `MAX_BYTES` (1 MiB; the largest committed suite is under 5 KiB), checked on the file's
  size before a byte is parsed;
- decoded as UTF-8 (a BOM is allowed), with the line and column of the first bad byte otherwise;
- YAML through PyYAML's safe loader (no Python objects), with two limits: anchors and aliases
  (`&a` / `*a`, which `yaml.safe_dump` writes for shared values) may expand the document to at
  most `MAX_NODES` (100,000) nodes, counted before anything is built (an alias is the only way a
  small file becomes a huge document, the "billion laughs"), and a recursive alias is refused;
  and duplicate keys are refused at any level (YAML keeps the last one silently, so a model or an
  attack list would vanish), naming both lines.

`references(raw)` lists the `module:callable` references a suite names (model presets, attack
and defence names): the code a suite makes Python import (see `plugins`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAX_BYTES = 1 << 20
MAX_NODES = 100_000


def _expanded_size(root: yaml.Node) -> int:
    """The number of nodes of the document with every alias written out (at most MAX_NODES + 1:
    counting stops there); a node that contains itself is refused."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise yaml.composer.ComposerError(None, None, "a recursive alias (a value that contains itself)",
                                              node.start_mark)
        open_nodes.add(id(node))
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for c in children:
            total = min(total + size(c), MAX_NODES + 1)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, with the alias expansion bounded and duplicate keys refused."""

    def compose_document(self):
        node = super().compose_document()
        if node is not None and _expanded_size(node) > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"its aliases (*name) expand it beyond {MAX_NODES:,} values; no suite is that large",
                node.start_mark)
        return node

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list as key): the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first.line + 1}, again on line "
                                f"{key_node.start_mark.line + 1}): YAML would keep only the last", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read(path: str | Path) -> Any:
    """The YAML document of suite file `path`, read as described above (ConfigError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: suite file not found. Pass the path of a YAML suite, e.g. suites/smoke.yaml.")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes; a suite file may have at most {MAX_BYTES:,} (1 MiB). "
                          "Is this the right file?")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}). Save the suite "
                          "as UTF-8.") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(e)}).") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a suite.") from None


def _one_line(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def references(raw: Any) -> list[str]:
    """The `module:callable` references of a suite document (model presets, attack and defence
    names), in order of appearance, each once."""
    if not isinstance(raw, dict):
        return []
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and ":" in value and value not in found:
            found.append(value)

    def defence(d: Any) -> None:
        if isinstance(d, dict):
            add(d.get("name"))

    defence(raw.get("defence"))
    for spec in (raw.get("models") or {}).values() if isinstance(raw.get("models"), dict) else ():
        if isinstance(spec, dict):
            add(spec.get("preset"))
            defence(spec.get("defence"))
    for a in raw.get("attacks") or () if isinstance(raw.get("attacks"), list) else ():
        if isinstance(a, dict):
            add(a.get("name"))
    return found
