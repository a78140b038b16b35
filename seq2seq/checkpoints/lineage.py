"""Where a checkpoint's weights come from: the parent a fine-tune started from, and its parents.

A run started with ``trainer.init_from=PARENT`` stores in each of its checkpoints a
``parent`` record (``parent_record``): the parent file's resolved path, its sha256, the step
it was saved at (None for an average) and the parent's own ``parent``, so the whole chain
travels with the checkpoint even when the files it names are gone. ``ancestors`` lists that
chain, nearest first, and ``describe`` says it in one line (``evaluate`` prints it).
"""

from __future__ import annotations

from pathlib import Path

from seq2seq.data.tokenizer import file_sha256


def parent_record(path: str | Path, ckpt: dict) -> dict:
    """What a fine-tune's checkpoints store of the checkpoint ``ckpt`` read from ``path``."""
    path = Path(path)
    progress = ckpt.get("progress")
    return {
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "step": progress["step"] if progress else None,
        "parent": ckpt.get("parent"),
    }


def ancestors(parent: dict | None) -> list[dict]:
    """The chain of a ``parent`` record, nearest first: each entry's path, sha256 and step."""
    chain = []
    while parent:
        chain.append({k: parent.get(k) for k in ("path", "sha256", "step")})
        parent = parent.get("parent")
    return chain


def describe(name: str, chain: list[dict]) -> str:
    """One line for the lineage of checkpoint ``name`` (its ``ancestors``)."""
    if not chain:
        return f"lineage: {name} (trained from random weights)"
    parts = [name]
    for entry in chain:
        step = f", step {entry['step']}" if entry.get("step") is not None else ""
        parts.append(f"{entry['path']} (sha256 {entry['sha256'][:12]}{step})")
    return "lineage: " + " <- ".join(parts)
