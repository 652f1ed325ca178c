"""What the win-rate commands are asked and what they report, without numpy.

Kept apart from the computations so the CLI (which builds its options from these models at
start-up) and the judges (whose reports carry a `WinRateReport`) load fast.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class WinRateReport(BaseModel):
    generator: str | None  # generator_2 when the file has a single one
    baseline: str | None  # generator_1 likewise
    n: int  # rows with a preference
    n_missing: int  # rows without one (failed or skipped judgements)
    win_rate: float
    standard_error: float
    ci_low: float  # bootstrap 95% interval of the win rate
    ci_high: float
    discrete_win_rate: float
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int
    avg_length: float | None  # mean characters of the model's outputs
    length_controlled_winrate: float | None = None
    lc_standard_error: float | None = None
    lc_variant: str | None = None  # "with_difficulty" (AlpacaEval instructions) or "minimal"
    lc_note: str | None = None
    lc_coefficients: dict[str, float] | None = None  # the fitted GLM, for inspection


class WinrateSettings(BaseModel):
    """What `rtune metrics winrate` is asked to do."""

    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(description="AlpacaEval annotations.json files (or .jsonl).")
    out: Path | None = Field(None, description="Also write the JSON here.")
    length_controlled: bool = Field(True, description="The length-controlled win rate (--no-lc skips it).")
    difficulty: Path | None = Field(
        None, description="Difficulty table from `rtune metrics difficulty` (default: the packaged AlpacaEval one)."
    )
    n_resamples: int = Field(1000, ge=10, description="Bootstrap resamples for the 95% interval.")
    seed: int = Field(0, description="Bootstrap seed.")


class DifficultySettings(BaseModel):
    """What `rtune metrics difficulty` is asked to do."""

    model_config = ConfigDict(extra="forbid")

    paths: list[Path] = Field(description="Annotation files of many models against one baseline, or folders of them.")
    out: Path = Field(description="Where to write the table (JSON).")
    exclude: list[str] = Field([], description="Leave out files with this stem (repeatable).")
    C: float | None = Field(None, ge=0, description="L1 penalty of the joint fit (default: chosen by 5-fold CV, slow).")
    note: str | None = Field(None, description="Free text stored in the table (data source, licence).")
