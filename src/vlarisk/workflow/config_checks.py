"""The pipeline's config: what Snakemake's ``configfile:`` and the JSON schema do not do.

Snakemake merges ``config/config.yaml`` (what differs from the defaults), a user's config files and
``--config`` values key by key; the schema fills in every key left out with its default, the example
sources, groups, factors and experiments included, so that a user's own replace them whole.
:func:`resolve_config` does the rest: a key set to null is removed, values that ``--config`` hands
over as strings (``training={epochs: 3}`` gives ``'3'``) are read as the schema's types
(:func:`coerce`), and a selected experiment's settings go over the config and ``--config`` over
those. :func:`check_schema` reports schema violations one line each, naming the file (or
``--config``) and key path, with a hint for a misspelt key or a block's setting given at the top level.

Snakemake reads a config file with PyYAML (or ``json``), and both keep only the *last* of two
equal keys in one mapping, silently: a config listing ``sources: {a: ..., a: ...}`` would train
one source named ``a``, with the second settings. :func:`check_config_files` reads the files again,
looking at the YAML node tree before any mapping is built, and refuses duplicate keys with the file,
line and key path.

This module imports nothing of the package (``import vlarisk`` would import torch), so the
Snakefile can load it on every run, dry runs included, at no cost.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterable, Mapping

import yaml

# Mappings of named things a config lists (not settings): an experiment or a --config value that gives
# one replaces it whole, as a user's config file replaces the schema's example.
REPLACED_WHOLE = (("sources",), ("multi_model", "groups"), ("ablations", "factors"), ("experiments",))
# Keys that select and define experiments; an experiment's own settings cannot hold them.
EXPERIMENT_KEYS = ("experiment", "experiments")
# Keys that vlarisk-run reads from --config before Snakemake starts (vlarisk.commands.run), with the hint
# given when Snakemake is called directly with one.
EXPERIMENTS_TO_RUN = "experiments_to_run"
RUNNER_KEYS = {
    EXPERIMENTS_TO_RUN: f" (read by vlarisk-run, which runs each experiment: vlarisk-run all --config '{EXPERIMENTS_TO_RUN}=[a, b]')"
}


class ConfigError(ValueError):
    """A config file is unusable; the message names the file, line and key."""


def duplicate_keys(path: str | os.PathLike) -> list[str]:
    """One message per duplicated key in the YAML/JSON file ``path`` (empty if none or unparsable).

    A file that does not parse is left to the loader that reports it (Snakemake).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []
    problems: list[str] = []
    _walk(root, "", str(path), problems)
    return problems


def _walk(node, where: str, path: str, problems: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key != "<<":
                if key in first_line:
                    inside = f" under '{where}'" if where else " at the top level"
                    problems.append(
                        f"{path}:{line}: key '{key}'{inside} appears again (first on line {first_line[key]}); "
                        "YAML would silently keep only the last one"
                    )
                else:
                    first_line[key] = line
            _walk(value_node, f"{where}.{key}" if where else str(key), path, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{where}[{index}]", path, problems)


def check_config_files(paths: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`ConfigError` listing every duplicated key in the given config files."""
    problems = [problem for path in paths for problem in duplicate_keys(path)]
    if problems:
        raise ConfigError("duplicate keys in the config:\n" + "\n".join(problems))


# -------------------------------------------------------------------------------------- layers
def over_defaults(defaults: Mapping, config: Mapping) -> dict:
    """``config`` merged over ``defaults`` key by key, as Snakemake's ``configfile:`` merges a user's
    config over the workflow's file (neither changed); for a module, whose ``configfile:`` is skipped."""
    from snakemake.utils import update_config  # imported here: vlarisk-run reads this module before Snakemake starts

    merged = copy.deepcopy(dict(defaults))
    update_config(merged, copy.deepcopy(dict(config)))
    return merged


def merge_configs(base: Mapping, override: Mapping, where: tuple[str, ...] = ()) -> dict:
    """``override`` merged over ``base`` (neither changed): mappings merge key by key, lists and
    values replace, ``None`` removes the key, and the collections in :data:`REPLACED_WHOLE`
    (``sources``, ``multi_model.groups``, ``ablations.factors``, ``experiments``) are replaced whole."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        path = (*where, key)
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and path not in REPLACED_WHOLE:
            merged[key] = merge_configs(merged[key], value, path)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def without_nulls(config: Mapping) -> dict:
    """``config`` without the keys set to null, at any depth of mappings: a null removes a key, whose
    default the schema then fills in."""
    return {key: without_nulls(value) if isinstance(value, Mapping) else value for key, value in config.items() if value is not None}


# -------------------------------------------------------------------------------- coercion
_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULLS = ("null", "~", "none")
_INTEGER = re.compile(r"^[-+]?\d+$")


def _facets(schema: Mapping, root: Mapping) -> list[Mapping]:
    """The schema and every schema it refers to or combines (``$ref``, ``allOf``, ``oneOf``, ``anyOf``)."""
    if not isinstance(schema, Mapping):
        return []
    if "$ref" in schema:
        target: Mapping = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return [schema, *_facets(target, root)]
    found = [schema]
    for combinator in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(combinator, []):
            found.extend(_facets(branch, root))
    return found


def _types(facets: list[Mapping]) -> set[str]:
    types: set[str] = set()
    for facet in facets:
        kind = facet.get("type")
        types.update([kind] if isinstance(kind, str) else kind or [])
        if any(isinstance(value, str) for value in facet.get("enum", [])):
            types.add("string")
    return types


def _from_text(text: str, types: set[str]):
    """``text`` as the first schema type it reads as; unchanged when the schema takes text or none fits."""
    if not types or "string" in types:
        return text
    word = text.strip().lower()
    if "null" in types or "object" in types or "array" in types:
        if word in _NULLS:
            return None
    if "boolean" in types and word in _BOOLEANS:
        return _BOOLEANS[word]
    if "integer" in types and _INTEGER.match(word):
        return int(word)
    if "number" in types:
        try:
            return int(word) if _INTEGER.match(word) else float(word)
        except ValueError:
            pass
    return text


def coerce(value, schema: Mapping, root: Mapping | None = None):
    """``value`` with every string the schema wants as another type converted to it (``'3'`` ->
    ``3`` where an integer is expected, ``'1e-4'`` -> ``0.0001``, ``'true'`` -> ``True``; ``'null'``
    -> ``None`` for a block, which removes it when merged). Strings that do not convert are left
    for the schema to report. A new value is returned; ``value`` is not changed."""
    root = schema if root is None else root
    facets = _facets(schema, root)
    if isinstance(value, str):
        return _from_text(value, _types(facets))
    if isinstance(value, Mapping):
        coerced = {}
        for key, item in value.items():
            inner = [f["properties"][key] for f in facets if key in f.get("properties", {})]
            inner += [f["additionalProperties"] for f in facets if isinstance(f.get("additionalProperties"), Mapping)]
            coerced[key] = coerce(item, {"allOf": inner}, root) if inner else copy.deepcopy(item)
        return coerced
    if isinstance(value, list):
        items = [f["items"] for f in facets if isinstance(f.get("items"), Mapping)]
        return [coerce(item, {"allOf": items}, root) if items else copy.deepcopy(item) for item in value]
    return value


# ------------------------------------------------------------------------------ experiments
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def select_experiment(config: Mapping, schema: Mapping) -> dict:
    """``config`` with the settings of its selected experiment (``experiment: <name>``, one of
    ``experiments``, else of the schema's examples) merged over it; unchanged when none is selected.
    Each experiment's keys are checked whether selected or not."""
    experiments = config.get("experiments", schema["properties"]["experiments"].get("default", {}))
    for name, settings in experiments.items():
        origin = f"experiments.{name}"
        if not EXPERIMENT_NAME.match(str(name)):
            raise ConfigError(f"{origin}: an experiment's name is its folder: letters, digits, '_', '-' and '.' only")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{origin}: expected a mapping of settings (e.g. {{training: {{lr: 0.0001}}}}), got {settings!r}")
        nested = [key for key in EXPERIMENT_KEYS if key in settings]
        if nested:
            raise ConfigError(f"{origin}: an experiment cannot hold {' or '.join(nested)}")
        unknown = [key for key in settings if key not in schema["properties"]]
        if unknown:
            raise ConfigError(
                "\n".join(f"{origin}: {key}: {_unknown_key_message(key, list(schema['properties']), schema)}" for key in unknown)
            )
    name = config.get("experiment")
    if name is None:
        return dict(config)
    if name not in experiments:
        defined = ", ".join(experiments) or "none"
        raise ConfigError(f"experiment: '{name}' is not defined under experiments (defined: {defined})")
    return merge_configs(config, coerce(experiments[name], schema))


def resolve_config(config: Mapping, schema: Mapping, overrides: Mapping | None = None) -> dict:
    """The pipeline's config, before the schema validates it and fills in the defaults.

    ``config`` is what Snakemake merged (``config/config.yaml``, the user's config files, ``--config``);
    ``overrides`` the ``--config`` values alone, applied again last so that they win over a selected
    experiment.
    """
    merged = select_experiment(without_nulls(coerce(config, schema)), schema)
    if overrides:
        merged = merge_configs(merged, coerce(overrides, schema))
    return merged


# --------------------------------------------------------------------------- schema errors
_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}
_COMBINATORS = ("allOf", "anyOf", "oneOf")


def schema_problems(config: Mapping, schema: Mapping) -> list[tuple[tuple, str]]:
    """Every schema violation of ``config`` as ``(key path, one-line message)``, in key-path order.

    An unknown key gets the closest known key as a suggestion; a wrong type names the type the
    schema expects; a failure inside ``oneOf``/``anyOf``/``allOf`` is reported by its most
    relevant branch (jsonschema's ``best_match``), not as the whole sub-schema.
    """
    import jsonschema  # Snakemake's own dependency; imported here so that loading this module stays cheap

    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [problem for error in validator.iter_errors(config) for problem in _described(error, jsonschema.exceptions.best_match)]
    return sorted(set(problems), key=lambda problem: [str(part) for part in problem[0]])


def _described(error, best_match) -> list[tuple[tuple, str]]:
    """One ``(key path, message)`` per problem of a jsonschema error (one per unknown key)."""
    path = tuple(error.absolute_path)
    if error.validator in _COMBINATORS and error.context:
        branches: dict = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        described = [_described(best_match(errors), best_match) for errors in branches.values()]
        if error.validator == "allOf" or len(described) == 1 or any(p != path for d in described for p, _ in d):
            return _described(best_match(error.context), best_match)
        return [(path, "; or ".join(dict.fromkeys(message for d in described for _, message in d)))]
    if error.validator == "not":
        keys = [key for facet in [error.validator_value, *error.validator_value.get("anyOf", [])] for key in facet.get("required", [])]
        return [(path, f"cannot also set {' or '.join(map(repr, keys))}" if keys else " ".join(error.message.split()))]
    if error.validator == "const":
        return [(path, f"expected {error.validator_value!r}, got {error.instance!r}")]
    if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, Mapping):
        known = list(error.schema.get("properties", {}))
        root = None if path else error.schema  # at the top level: hints for a block's setting
        return [((*path, key), _unknown_key_message(key, known, root)) for key in error.instance if key not in known]
    if error.validator == "type":
        expected = [error.validator_value] if isinstance(error.validator_value, str) else list(error.validator_value)
        wanted = " or ".join(_TYPE_NAMES.get(kind, kind) for kind in expected)
        return [(path, f"expected {wanted}, got {error.instance!r}")]
    if error.validator == "enum":
        return [(path, f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}")]
    if error.validator == "required":
        return [(path, error.message.replace("is a required property", "is required"))]
    return [(path, " ".join(error.message.split()))]


def _unknown_key_message(key: str, known: list[str], root: Mapping | None = None) -> str:
    """``unknown key (did you mean X?)``, or the list of known keys when none is close; for a top-level
    key (``root``: the schema) that is a setting of a block or read by vlarisk-run, where it belongs."""
    if root is not None and key in RUNNER_KEYS:
        return f"unknown key{RUNNER_KEYS[key]}"
    blocks = [name for name, block in root.get("properties", {}).items() if key in _block_keys(block, root)] if root else []
    if blocks:
        return f"unknown key (a setting of {' / '.join(blocks)}: write {blocks[0]}: {{{key}: ...}})"
    close = difflib.get_close_matches(str(key), known, n=1)
    return f"unknown key (did you mean {close[0]}?)" if close else f"unknown key (the keys are {', '.join(known)})"


def _block_keys(block: Mapping, root: Mapping) -> set[str]:
    return {key for facet in _facets(block, root) for key in facet.get("properties", {})}


def check_schema(config: Mapping, schema: Mapping, origins: Iterable[tuple[str, Mapping]] = ()) -> None:
    """Raise :class:`ConfigError` with one line per schema violation, ``<origin>: <key.path>: <problem>``.

    ``origins`` are the layers as ``(name, mapping)`` in the order they were merged (defaults first);
    each problem names the last layer that sets its key path (or, for an unknown key under a
    block, the block), else ``config``.
    """
    layers = list(origins)
    lines = [f"{_origin_of(path, layers)}: {_dotted(path)}: {message}" for path, message in schema_problems(config, schema)]
    if lines:
        raise ConfigError("\n".join(lines))


def _origin_of(path: tuple, layers: list[tuple[str, Mapping]]) -> str:
    """The last layer that holds ``path``, or else the longest part of it."""
    for length in range(len(path), 0, -1):
        for name, layer in reversed(layers):
            if _holds(layer, path[:length]):
                return name
    return "config"


def _holds(layer, path: tuple) -> bool:
    for part in path:
        if isinstance(layer, Mapping) and part in layer:
            layer = layer[part]
        elif isinstance(layer, list) and isinstance(part, int) and part < len(layer):
            layer = layer[part]
        else:
            return False
    return True


def _dotted(path: tuple) -> str:
    """``('training', 'hidden_dims', 0)`` -> ``training.hidden_dims[0]``; the top level is ``(top level)``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text or "(top level)"
