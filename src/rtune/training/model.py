"""Load the model to train (full, LoRA, or QLoRA on a 4-bit base), pick the precision, check memory first."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rtune.errors import RtuneError
from rtune.models import native_bf16, resolve_device
from rtune.training.config import TrainConfig
from rtune.training.dropout import speed_up_lora_dropout

GIB = 1024**3


@dataclass(frozen=True)
class Precision:
    bf16: bool  # bf16 autocast (and bf16 base weights for LoRA/QLoRA)
    reason: str

    @property
    def base_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.bf16 else torch.float32


def resolve_precision(setting: str, device_type: str) -> Precision:
    if setting == "fp32":
        return Precision(False, "fp32 requested")
    if setting == "bf16":
        return Precision(True, "bf16 requested")
    if native_bf16(device_type):
        return Precision(True, f"auto: {device_type} has native bf16")
    return Precision(
        False, f"auto: {device_type} has no native bf16 (no AMX/AVX512-BF16 or GPU support), so fp32 is faster"
    )


@dataclass(frozen=True)
class ParamCounts:
    total: int
    quantizable: int  # weights of the linear layers inside the body (what 4-bit quantization shrinks)
    lora: int  # trainable parameters LoRA adds for the configured rank and targets (approximate for lists)
    hidden: int
    layers: int
    vocab: int


def count_params(model_path: str, config: TrainConfig) -> ParamCounts:
    """Parameter counts from the model config alone (weights built on the meta device, nothing loaded)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(model_path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config)
    output = model.get_output_embeddings()
    targets = config.lora_target_modules
    total = sum(p.numel() for p in model.parameters())
    quantizable = lora = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output:
            continue
        quantizable += module.weight.numel()
        if targets == "all-linear" or any(
            name.endswith(t) for t in ([targets] if isinstance(targets, str) else targets)
        ):
            lora += config.lora_r * (module.in_features + module.out_features)
    text = model_config.get_text_config()
    return ParamCounts(total, quantizable, lora, text.hidden_size, text.num_hidden_layers, text.vocab_size)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.optimizer + self.activations


def estimate_memory(counts: ParamCounts, config: TrainConfig, precision: Precision) -> MemoryEstimate:
    """Rough bytes needed: weights, trainable state (fp32 weight + grad + two Adam moments), activations."""
    base_bytes = 2 if precision.bf16 else 4
    if config.peft == "none":
        weights, trainable = counts.total * 4, counts.total
    elif config.peft == "lora":
        weights, trainable = counts.total * base_bytes, counts.lora
    else:  # NF4 with double quantization is ~0.53 bytes per weight; PEFT upcasts the rest (norms, embeddings) to fp32
        weights, trainable = (counts.total - counts.quantizable) * 4 + counts.quantizable * 0.53, counts.lora
    tokens = config.batch_size * config.max_length
    act_bytes = 2 if precision.bf16 else 4
    per_layer = tokens * counts.hidden * act_bytes * (2 if config.gradient_checkpointing else 17)
    logits = (1 << 26) * 4 * 3  # the loss's logits chunk, its softmax and their gradient
    activations = per_layer * counts.layers + tokens * counts.hidden * act_bytes * 17 + logits
    return MemoryEstimate(weights, trainable * 16, activations)


def available_memory(device: str) -> tuple[float, str]:
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free, "free GPU memory"
    import psutil

    return psutil.virtual_memory().available, "available RAM"


def check_memory(
    estimate: MemoryEstimate, available: float, what: str, config: TrainConfig, processes_per_device: int = 1
) -> None:
    """Refuse to start a run that cannot fit, and say which setting to change."""
    need = estimate.total * processes_per_device
    if need <= 0.9 * available:
        return
    hints = []
    if config.peft != "qlora":
        hints.append("--peft qlora (4-bit base weights)" if config.peft == "lora" else "--peft lora or --peft qlora")
    if config.batch_size > 1:
        hints.append(
            f"--batch-size {max(1, config.batch_size // 2)} --grad-accum {config.grad_accum * 2} (same effective batch)"
        )
    if not config.gradient_checkpointing:
        hints.append("gradient_checkpointing: true in the config")
    hints.append(f"a smaller --max-length than {config.max_length}")
    raise RtuneError(
        f"the model does not fit: training needs about {need / GIB:.1f} GiB (weights {estimate.weights / GIB:.1f}, "
        f"optimizer state {estimate.optimizer / GIB:.1f}, activations {estimate.activations / GIB:.1f}) "
        f"but only {available / GIB:.1f} GiB {what}; try {', '.join(hints)} "
        "(or check_memory: false to try anyway)"
    )


def load_for_training(model_path: str, config: TrainConfig, precision: Precision, device_map=None):
    """The model ready for the Trainer: LoRA adapters (seeded) on a bf16/fp32 or NF4 base, or all weights trainable."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, set_seed

    kwargs: dict = {"dtype": precision.base_dtype if config.peft != "none" else torch.float32}
    if config.peft == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.quant_type,
            bnb_4bit_use_double_quant=config.double_quant,
            bnb_4bit_compute_dtype=precision.base_dtype,
            bnb_4bit_quant_storage=precision.base_dtype,
        )
        kwargs["device_map"] = device_map or {"": resolve_device()}  # bitsandbytes quantizes as the weights are placed
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise RtuneError(f"could not load model '{model_path}' for training ({type(exc).__name__}: {exc})") from exc
    model.config.use_cache = False
    if config.peft == "none":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.peft == "qlora":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    set_seed(config.seed)  # the adapters' initial weights
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    speed_up_lora_dropout(model)
    return model
