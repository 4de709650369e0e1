"""Training scales with ``accelerate launch``: SFT and the LoRA verifier under DDP (gloo, 2 CPUs).

The multi-GPU command is the same with the GPU count: ``accelerate launch --multi_gpu
--num_processes 8 ...`` (or a DeepSpeed/FSDP config via ``--config_file``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from spec_tool_node.actions import ToolCall, ToolCallsAction
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.verifiers.trained import TrainedVerifier
from tests.conftest import make_model
from tests.training.ddp_train import CITIES, WEATHER_TOOL

SCRIPT = Path(__file__).with_name("ddp_train.py")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(kind: str, base: Path, out: Path) -> tuple[list, list]:
    """Run the training script on two CPU processes; returns the rows each rank trained on."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(SCRIPT), kind, str(base), str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for r in (0, 1):
        state = json.loads((out / f"state-rank{r}.json").read_text())
        assert state == {
            "distributed_type": "DistributedType.MULTI_CPU",
            "backend": "gloo",
            "num_processes": 2,
        }
    ranks = [json.loads((out / f"seen-rank{r}.json").read_text()) for r in (0, 1)]
    print(f"{kind}: rank 0 saw {[c for c, _ in ranks[0]]}, rank 1 saw {[c for c, _ in ranks[1]]}")
    return ranks[0], ranks[1]


@pytest.fixture
def base(tmp_path, tiny_tokenizer):
    folder = tmp_path / "base"
    make_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_sft_under_accelerate_launch_shards_the_data_and_saves_a_loadable_adapter(tmp_path, base):
    rank0, rank1 = launch("sft", base, tmp_path / "sft")
    assert len(rank0) == len(rank1) == 4  # 2 steps x batch 2 on each process
    assert not {c for c, _ in rank0} & {c for c, _ in rank1}  # different shards
    assert {c for c, _ in rank0 + rank1} == set(CITIES)  # together: the whole data, once
    adapter = tmp_path / "sft" / "run" / "adapter"
    assert json.loads((adapter / "training.json").read_text())["global_step"] == 2
    model = HFChatModel(model=str(base), adapter=str(adapter), dtype="float32", max_new_tokens=4)
    assert model.invoke("What's the weather in Paris?").usage_metadata["input_tokens"] > 0


@pytest.mark.slow
def test_verifier_under_accelerate_launch_shards_the_pairs_and_saves_a_loadable_adapter(
    tmp_path, base
):
    rank0, rank1 = launch("verifier", base, tmp_path / "verifier")
    # 2 steps x batch 2, plus the batch accelerate's loader prepares ahead (16 pairs: 8 a rank)
    assert len(rank0) == len(rank1) >= 4
    assert not {h for _, h in rank0} & {h for _, h in rank1}  # no pair trained on twice
    adapter = tmp_path / "verifier" / "run" / "adapter"
    verifier = TrainedVerifier(model=str(base), adapter=str(adapter), dtype="float32")
    draft = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
    context = [HumanMessage("What's the weather in Paris?")]
    assert 0.0 <= verifier.score(context, [WEATHER_TOOL["function"]], draft).p_accept <= 1.0
