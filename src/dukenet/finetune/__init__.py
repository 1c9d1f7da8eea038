"""Fine-tuning DukeNET's own model on exported datasets (SFT and DPO with TRL + PEFT/LoRA) and
registering the result as a ``local`` agent.

Nothing here imports torch, transformers, trl or peft at import time: they are imported inside
the functions that need them (the ``finetune`` extra), so ``dukenet --help`` stays fast.
"""
