"""What one evaluation shares between its units: model, tokenizer, prompt style, and the saved finished units.

Work is done in units (one task, or one MMLU subject). Each finished unit is saved beside the
output (`<out>.parts/<unit>.json`) under a key of everything that decides its numbers, and loaded
instead of recomputed when the same evaluation runs again. The scoring model is loaded on first
use and freed before generation loads its own copy, so only one is in memory at a time.
"""

from __future__ import annotations

import gc
from dataclasses import asdict
from pathlib import Path

from rtune.data.registry import resolve_data_dir
from rtune.evals.core.prompts import PromptStyle, prompt_style
from rtune.evals.core.results import UnitResult
from rtune.evals.core.settings import CoreEvalSettings
from rtune.io import atomic_write_json, read_json, stable_hash
from rtune.progress import Progress

PARTS_FORMAT = 1  # bump when a saved unit's meaning changes, so old parts are recomputed


def parts_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".parts")


def model_type(model_path: str) -> str:
    """The `model_type` of a model folder's config; "" for a hub id (whose name then stands in for it)."""
    config = Path(model_path) / "config.json"
    return str(read_json(config).get("model_type", "")) if config.is_file() else ""


class Session:
    """Loads the tokenizer at once, the scoring model and the generator when first needed."""

    def __init__(self, settings: CoreEvalSettings, progress: Progress, generator=None):
        import torch

        from rtune.models import load_tokenizer, model_fingerprint, prepare_model, resolve_device

        self.settings, self.progress, self._generator = settings, progress, generator
        self.data_dir = resolve_data_dir(settings.data_dir)
        self.parts = parts_dir(settings.out)
        self.model_path = prepare_model(settings.model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.style: PromptStyle = prompt_style(
            self.tokenizer, settings.chat_template, settings.protocol, model_type(self.model_path) or self.model_path
        )
        self.fingerprint = model_fingerprint(self.model_path)
        self.device = resolve_device(settings.device)
        self._scorer = None
        torch.manual_seed(settings.seed)

    @property
    def scorer(self):
        if self._scorer is None:
            import torch

            from rtune.evals.choice_scorer import ChoiceScorer
            from rtune.models import load_model

            model, _ = load_model(self.model_path, dtype=getattr(torch, self.settings.dtype))
            self._scorer = ChoiceScorer(
                model.to(self.device),
                self.tokenizer,
                batch_size=self.settings.batch_size,
                add_special_tokens=self.style.add_special_tokens,
            )
        return self._scorer

    def release_model(self) -> None:
        """Free the scoring model before generation loads its own copy."""
        if self._scorer is not None:
            import torch

            self._scorer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def generator(self):
        """The generator given to `run`, else the model through the generation engine, its cache among the parts."""
        if self._generator is None:
            from rtune.generation import GenerationCache, from_spec

            cache = GenerationCache(self.parts / "generation.sqlite")
            self._generator = from_spec(
                self.model_path,
                cache=cache,
                batch_size=self.settings.batch_size,
                device=self.device,
                bf16=self.settings.dtype == "bfloat16",
            )
        return self._generator

    def unit_key(self, name: str, n_shot: int, limit: int | None) -> str:
        s = self.settings
        return stable_hash(
            {
                "format": PARTS_FORMAT,
                "unit": name,
                "model": self.fingerprint,
                "chat": self.style.chat,
                "protocol": s.protocol,
                "template": self.tokenizer.chat_template if self.style.chat else None,
                "n_shot": n_shot,
                "limit": limit,
                "dtype": s.dtype,
                "data": str(self.data_dir),
            }
        )

    def load_part(self, name: str, key: str) -> UnitResult | None:
        path = self.parts / f"{name}.json"
        if not path.exists():
            return None
        saved = read_json(path)
        if saved.get("key") != key:
            return None
        return UnitResult(**saved["unit"])

    def save_part(self, unit: UnitResult, key: str) -> None:
        atomic_write_json(self.parts / f"{unit.name}.json", {"key": key, "unit": asdict(unit)}, indent=None)
