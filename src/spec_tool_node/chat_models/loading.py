"""Loading local weights: an offline asset, a local folder or a hub id, plus a peft adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spec_tool_node import assets
from spec_tool_node.errors import SpecToolNodeError


class ModelLoadError(SpecToolNodeError, ValueError):
    """A model or adapter that cannot be found under any of the names tried."""


def load_pretrained(
    name: str,
    adapter: str | Path | None = None,
    *,
    dtype: str = "bfloat16",
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from an asset name, a local folder or a hub id, plus a peft adapter.

    Raises:
        ModelLoadError: ``name`` is none of the three (naming what was tried), or the adapter
            folder does not exist.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in assets.ASSETS:
        source: str | Path = assets.resolve(name)
    else:
        source = Path(name).expanduser() if Path(name).expanduser().exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as e:
        known = ", ".join(sorted(assets.ASSETS))
        raise ModelLoadError(
            f"could not load model {name!r}: it is not an offline asset ({known}), not a local "
            f"folder, and loading it as a hub id failed: {e}"
        ) from e
    if adapter is not None:
        from peft import PeftModel

        if not Path(adapter).exists():
            raise ModelLoadError(f"adapter folder {str(adapter)!r} does not exist")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
