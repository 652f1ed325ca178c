"""Settings of `rtune annotate`'s library functions, kept free of the web stack so the CLI loads fast.

The CLI reads its defaults and help texts from these fields (`rtune.cli.options.option`).
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator


class PairsSource(BaseModel):
    """Where `rtune annotate` takes its pairs from: two outputs files, a blind-pairs file, or the folder itself."""

    directory: Path = Field(description="Folder for pairs.json and judgments.sqlite (rerun to resume).")
    outputs: Path | None = Field(None, description="The model's outputs (AlpacaEval format): output_2 of each pair.")
    reference: Path | None = Field(None, description="Reference outputs for the same instructions: output_1.")
    pairs_file: Path | None = Field(
        None, description="A blind-pairs file (from the study pipeline) instead of --outputs/--reference."
    )
    seed: int | None = Field(
        None, description="Draws which output is shown on the left (default 0; a pairs file fixes it)."
    )
    limit: int | None = Field(None, ge=1, description="Only the first N pairs.")


class ExportSettings(BaseModel):
    directory: Path = Field(description="Annotate folder (pairs.json, judgments.sqlite).")
    out: Path | None = Field(None, description="Where to write the annotations (default DIR/annotations.json).")
    include_skipped: bool = Field(True, description="Keep skipped pairs as rows with preference null.")


class AgreementSettings(BaseModel):
    directory: Path = Field(description="Annotate folder whose people are compared.")
    with_files: list[Path] = Field(
        default_factory=list, description="AlpacaEval annotations files (LLM judges, other people) to compare with."
    )


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    directory: Path = Field(description="Annotate folder: pairs.json and judgments.sqlite.")
    annotator: str = Field(description="Name stored with every judgment (the `annotator` of the export).")
    host: str = Field("127.0.0.1", description="Interface to bind; anything but loopback requires the session token.")
    port: int = Field(0, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    token: str | None = Field(None, description="Session token; generated when the host is not loopback.")

    @field_validator("annotator")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 100:
            raise ValueError("annotator name must be 1 to 100 characters")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServerSettings:
        if self.token is None and not is_loopback(self.host):
            self.token = secrets.token_urlsafe(24)
        return self
