"""Annotation settings (`annotation:` in rlhf.yaml): the front end, the queue, the web app, simulated annotators, Argilla."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rlhf.core.settings import HttpURL, Section
from rlhf.core.types import MAX_OVERLAP


class SimulatedAnnotatorConfig(Section):
    count: int = Field(3, ge=1, description="Number of simulated annotators.")
    noise: float = Field(0.15, ge=0.0, le=0.5, description="Probability that a simulated annotator flips a pairwise verdict.")


class ArgillaConfig(Section):
    url: HttpURL = Field("http://127.0.0.1:6900", description="Argilla server (`annotation.frontend: argilla`).")
    workspace: str = Field("argilla", min_length=1,
                           description="Argilla workspace the round datasets go to (must exist).")
    api_key_env: str = Field(
        "RLHF_ARGILLA_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding an owner/admin API key (the key is never stored).",
    )
    dataset_prefix: str | None = Field(None, description="Dataset names are PREFIX-iter-NNN (null = `project`).")
    timeout_seconds: float = Field(30.0, gt=0, description="Per-request timeout.")


class AnnotationConfig(Section):
    frontend: Literal["gradio", "argilla"] = Field("gradio", description="Where humans judge.")
    annotator: Literal["human", "simulated"] = Field("simulated", description="Default for `rlhf round --annotator`.")
    overlap: int = Field(1, ge=1, le=MAX_OVERLAP, description="Distinct annotators per task.")
    lease_seconds: int = Field(900, ge=10, description="How long a task stays leased to one annotator.")
    host: str = Field("127.0.0.1", description="Address `rlhf annotate serve` listens on.")
    port: int = Field(7861, ge=1, le=65535, description="Port of `rlhf annotate serve`.")
    session_secret_file: str = Field(
        ".session-secret",
        description="Workspace file with the key that signs session cookies (created on first use, mode 0600); "
        "the RLHF_SESSION_SECRET environment variable takes precedence.",
    )
    session_hours: float = Field(12.0, gt=0, description="How long an annotator stays logged in.")
    secure_cookies: bool = Field(False, description="Send session cookies only over HTTPS (turn on behind TLS).")
    simulated: SimulatedAnnotatorConfig = SimulatedAnnotatorConfig()
    argilla: ArgillaConfig = ArgillaConfig()
