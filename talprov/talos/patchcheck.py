"""A machine config and its patches, patched and checked, with problems blamed on
the file that brought them in.

Talos checks the patched config as a whole, so a field a patch gets wrong shows
up as a problem of the patched config. People need the patch file (and the path
inside it) to fix it, not the base file: the problem is traced to the last file
(the base or a patch) after which the patched-so-far config has it.
"""

from __future__ import annotations

from typing import Any

from talprov.errors import ConfigError, refuse_lone_surrogates
from talprov.talos.configschema import (
    ConfigProblem,
    check_config,
    config_problems,
    document_identity,
    document_label,
)
from talprov.talos.machineconfig import apply_patches, load_documents
from talprov.talos.versions import TalosVersion


def patched_and_checked(
    base: str, where: str, patches: list[tuple[str, str]], talos_version: str | TalosVersion,
) -> str:
    """``base`` (named ``where``) with ``patches`` ((label, text) each: the label names
    the patch file) applied as Talos's strategic merge, checked as Talos
    ``talos_version`` decodes it. Returns ``base`` unchanged without patches.

    Raises ``ConfigError`` naming the base or the patch that brought the first
    problem in, its document and the field path (never a value). Pure.
    """
    # Each file on its own first, so that a string Talos could not read (a lone
    # surrogate a YAML escape made) is blamed on the file and field it is in.
    for label, text in [(where, base), *patches]:
        for number, document in enumerate(load_documents(text, label), start=1):
            refuse_lone_surrogates(document, f"{label}: document {number}")
    if not patches:
        check_config(load_documents(base, where), where, talos_version)
        return base
    labels = [label for label, _ in patches]
    texts = [text for _, text in patches]
    patched = apply_patches(base, texts, where, labels=labels)
    try:
        check_config(load_documents(patched, where), where, talos_version)
    except ConfigProblem as problem:
        raise _blamed(problem, base, where, patches, talos_version) from None
    return patched


def _blamed(problem: ConfigProblem, base: str, where: str, patches: list[tuple[str, str]],
            talos_version: str | TalosVersion) -> ConfigError:
    """``problem`` re-addressed to the patch after which the config has had it since
    (as it is, when that is the base)."""
    for count in range(len(patches) - 1, -1, -1):
        before = _patched(base, where, patches[:count])
        if not _has(before, where, problem, talos_version):
            label, text = patches[count]
            return _in_patch(problem, label, text)
    return problem


def _patched(base: str, where: str, patches: list[tuple[str, str]]) -> list[dict[str, Any]]:
    text = apply_patches(base, [t for _, t in patches], where,
                         labels=[label for label, _ in patches])
    return load_documents(text, where) if text.strip() else []


def _has(documents: list[dict[str, Any]], where: str, problem: ConfigProblem,
         talos_version: str | TalosVersion) -> bool:
    return any(found.identity == problem.identity and found.field == problem.field
               and found.message == problem.message
               for found in config_problems(documents, where, talos_version))


def _in_patch(problem: ConfigProblem, label: str, text: str) -> ConfigError:
    documents = load_documents(text, label)
    number = next((n for n, document in enumerate(documents, start=1)
                   if document_identity(document)[1:] == problem.identity[1:]), None)
    if number is None:
        return ConfigError(label, f"{problem.field or 'document'}: {problem.message}")
    document = documents[number - 1]
    at = document_label(document, number, label)
    return ConfigError(f"{at}: {problem.field}" if problem.field else at, problem.message)
