"""Checks of the pipeline's config files that loading them and the JSON schema cannot make.

Snakemake reads a config file with PyYAML (or ``json``), and both keep only the *last* of two
equal keys in one mapping, silently: a config listing ``sources: {a: ..., a: ...}`` would train
one source named ``a``, with the second settings. :func:`check_config_files` reads the files again,
looking at the YAML node tree before any mapping is built, and refuses duplicate keys with the file,
line and key path.

This module imports nothing of the package (``import vlarisk`` would import torch), so the
Snakefile can load it on every run, dry runs included, at no cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import yaml


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


def effective_config_files(workflow) -> list[str]:
    """The config files a Snakemake workflow's ``config`` came from.

    With ``--replace-workflow-config`` the Snakefile's own ``configfile:`` is discarded, so only
    the files given on the command line count.
    """
    settings = getattr(workflow, "config_settings", None)
    if settings is not None and getattr(settings, "replace_workflow_config", False):
        return [str(p) for p in settings.configfiles]
    return [str(p) for p in workflow.configfiles]
