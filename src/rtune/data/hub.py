"""The one door to the Hugging Face hub for datasets: rows of one split (or of every split), or a clear error."""

from __future__ import annotations

from rtune.errors import RtuneError


def load_rows(dataset_id: str, config: str | None = None, split: str | None = "train") -> list[dict]:
    """Rows of `split` (None: every split, in the dataset's order) of a hub dataset; offline or gated is
    an RtuneError."""
    from datasets import load_dataset

    try:
        loaded = load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # the hub raises many types; one message covers offline, gated, missing, renamed
        raise RtuneError(
            f"could not load '{dataset_id}' ({config or 'default'}, {split or 'all splits'}) from the Hugging Face "
            f"hub ({type(exc).__name__}: {exc}); offline, pass --data-dir with local copies"
        ) from exc
    if split is None:
        return [dict(row) for part in loaded.values() for row in part]
    return [dict(row) for row in loaded]
