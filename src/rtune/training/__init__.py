"""Fine-tuning for IT and RT: data batching, the supervised-only loss, the Trainer, resume and export."""

from rtune.training.run import TrainResult, train

__all__ = ["TrainResult", "train"]
