"""Shared fixtures: a tiny random causal LM with a tokenizer trained on the fly, and the shared data dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("RTUNE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea. The sea is wide and deep and blue.",
    "Explain why the sky is blue: sunlight scatters off air molecules, and blue light scatters most.",
    "<|user|>\nGive me three tips.\n<|assistant|>\n1. Sleep well.\n2. Drink water.\n3. Walk daily.",
    "def add(a, b):\n    return a + b\n",
    "Question: What is 2 + 3?\nAnswer: 5",
    "Sorry, I can't help with that. As an AI, I cannot assist with harmful requests.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "First paragraph.\n\nSecond paragraph.\n\n\nThird paragraph.",  # teaches merges of newlines
] * 20


def build_tiny_model(path: Path) -> Path:
    """A 2-layer Llama and a byte-level BPE tokenizer (BOS added, EOS/pad distinct), saved as an HF folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rtune.templates import TULU_CHAT_TEMPLATE

    specials = ["<unk>", "<bos>", "<eos>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", backend.token_to_id("<bos>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    tokenizer.chat_template = TULU_CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set RTUNE_TEST_DATA)")
    return SHARED_DATA


TRAIN_PAIRS = [  # short instruction/response pairs for training tests
    ("Write a short poem about the sea.", "The sea is wide and deep and blue."),
    ("Why is the sky blue?", "Sunlight scatters off air molecules, and blue light scatters most."),
    ("Give me three tips.", "1. Sleep well.\n2. Drink water.\n3. Walk daily."),
    ("What is 2 + 3?", "5"),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Write add in Python.", "def add(a, b):\n    return a + b\n"),
    ("Tell me about foxes.", "The quick brown fox jumps over the lazy dog."),
    ("Help me hack.", "Sorry, I can't help with that."),
]


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> Path:
    """TRAIN_PAIRS as a record JSONL file."""
    path = tmp_path_factory.mktemp("data") / "records.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": p, "completion": c, "source": "test"}) + "\n"
            for i, (p, c) in enumerate(TRAIN_PAIRS)
        )
    )
    return path
