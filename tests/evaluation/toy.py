"""A hand-made cache of four examples whose metrics are computed by hand in the tests.

    example  greedy draft  p(ACCEPT)  strong action
    e1       right         0.9        right
    e2       wrong         0.6        right
    e3       wrong         0.3        wrong
    e4       right         0.4        right

Walls: draft 1.0 s, verifier 0.1 s, strong 4.0 s, judge 2.0 s. The judge accepts e1 and e2.
"""

from __future__ import annotations

from pathlib import Path

from spec_tool_node.actions import tool_schemas
from spec_tool_node.costs import CallRecord
from spec_tool_node.evaluation import ModelKeys, message_record, model_key
from spec_tool_node.example_files import Example
from tests.evaluation.fakes import TOOLS, call, text_of, write_cache

KEYS = ModelKeys(
    proposer=model_key("cheap-model"),
    strong=model_key("strong-model"),
    verifier=model_key("verifier-model"),
)
CITIES = {"e1": "Paris", "e2": "Rome", "e3": "Oslo", "e4": "Bern"}
DRAFT = {"e1": "Paris", "e2": "Lyon", "e3": "Lima", "e4": "Bern"}
STRONG = {"e1": "Paris", "e2": "Rome", "e3": "Nice", "e4": "Bern"}
P = {"e1": 0.9, "e2": 0.6, "e3": 0.3, "e4": 0.4}
JUDGE = {"e1": 1.0, "e2": 1.0, "e3": 0.0, "e4": 0.0}
LOGPROB = {"e1": -0.1, "e2": -0.5, "e3": -0.9, "e4": -0.2}


def examples() -> list[Example]:
    return [
        Example(id=i, tools=TOOLS, messages=[{"role": "user", "content": f"weather in {c}?"}],
                gold=[{"get_weather": {"city": [c]}}], meta={"category": "toy"})
        for i, c in CITIES.items()
    ]  # fmt: skip


def scored(text: str, p: float, role: str, purpose: str, wall: float) -> dict:
    record = CallRecord(role=role, model=f"{role}-model", purpose=purpose, input_tokens=30,
                        wall_s=wall)  # fmt: skip
    return {"drafts": [text], "p": [p], "records": [record.model_dump(mode="json")],
            "exception": None}  # fmt: skip


def write(directory: Path) -> None:
    tools = tool_schemas(TOOLS)
    for i in CITIES:
        draft = message_record(call("get_weather", city=DRAFT[i]), tools, wall_s=1.0,
                               model_name="cheap-model")  # fmt: skip
        draft["mean_logprob"] = LOGPROB[i]
        sample = {**draft, "sample_kwargs": {"do_sample": True, "temperature": 0.8}}
        strong = message_record(call("get_weather", city=STRONG[i]), tools, wall_s=4.0,
                                model_name="strong-model")  # fmt: skip
        text = text_of(call("get_weather", city=DRAFT[i]))
        single = scored(text, P[i], "verifier", "verify", 0.1)
        batch = {**scored(text, P[i], "verifier", "verify", 0.1), "drafts": [text, text],
                 "p": [P[i], P[i]]}  # fmt: skip
        write_cache(directory, KEYS, "proposer", [{"id": i, "draft": draft}])
        write_cache(directory, KEYS, "samples", [{"id": i, "samples": [sample]}])
        write_cache(directory, KEYS, "strong", [{"id": i, "act": strong}])
        write_cache(directory, KEYS, "verifier", [{"id": i, "single": single, "batch": batch}])
        write_cache(
            directory, KEYS, "judge", [{"id": i, **scored(text, JUDGE[i], "strong", "judge", 2.0)}]
        )


def lookup_models() -> dict[str, object]:
    """Lookup models whose outputs equal this cache (for live checks)."""
    from tests.evaluation.fakes import LookupChatModel, LookupVerifier

    question = {i: f"weather in {c}?" for i, c in CITIES.items()}
    proposer = LookupChatModel(
        name="cheap-model",
        table={question[i]: {"greedy": call("get_weather", city=DRAFT[i]),
                             "samples": [call("get_weather", city=DRAFT[i])]} for i in CITIES},
    )  # fmt: skip
    strong = LookupChatModel(
        name="strong-model",
        table={question[i]: {"act": call("get_weather", city=STRONG[i]),
                             "judge": "ACCEPT" if JUDGE[i] else "REJECT"} for i in CITIES},
    )  # fmt: skip
    verifier = LookupVerifier({text_of(call("get_weather", city=DRAFT[i])): P[i] for i in CITIES})
    return {"proposer": proposer, "strong": strong, "verifier": verifier}
