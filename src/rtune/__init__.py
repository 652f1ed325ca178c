"""rtune: Response Tuning and instruction tuning, trained and measured side by side."""

__version__ = "0.1.0"
