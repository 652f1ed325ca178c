"""The pieces every report section is made of: a table with CIs, figures as embedded PNGs."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field


@dataclass
class Section:
    title: str
    note: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, base64 PNG)
    html_extra: str = ""  # HTML built from escaped text by the kind that wrote it
    markdown_extra: str = ""


def ci_text(value: float | None, low: float | None = None, high: float | None = None, digits: int = 3) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.{digits}f}" + (
        f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else ""
    )


def png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(
    labels: list[str], series: dict[str, list[tuple[float, float, float]]], xlabel: str, reference: float | None = None
) -> str:
    """Horizontal grouped bars with CI whiskers; each series value is (value, low, high)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(labels) * max(1, len(series))))
    height = 0.8 / max(1, len(series))
    for n, (name, values) in enumerate(series.items()):
        ys = [i + n * height for i in range(len(labels))]
        points = [v[0] for v in values]
        errors = [[max(0, v[0] - v[1]) for v in values], [max(0, v[2] - v[0]) for v in values]]
        ax.barh(ys, points, height=height, xerr=errors, capsize=3, label=name)
    ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return png(fig)
