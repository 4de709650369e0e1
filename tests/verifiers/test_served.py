"""ServedVerifier: p(ACCEPT) from the label tokens' top log-probs of a served verifier."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from spec_tool_node.actions import ToolCall, ToolCallsAction
from spec_tool_node.verifiers.served import ServedVerifier, label_share


def test_label_share_is_the_pair_softmax_of_the_label_tokens():
    top = [
        {"token": "ACCEPT", "logprob": math.log(0.6)},
        {"token": "REJECT", "logprob": math.log(0.2)},
        {"token": "The", "logprob": math.log(0.1)},
    ]
    assert label_share(top) == pytest.approx(0.75)


def test_label_share_adds_up_tokens_that_begin_a_label():
    top = [
        {"token": "AC", "logprob": math.log(0.3)},
        {"token": " ACCEPT", "logprob": math.log(0.1)},
        {"token": "REJ", "logprob": math.log(0.4)},
    ]
    assert label_share(top) == pytest.approx(0.5)


def test_no_label_among_the_top_tokens_is_a_reject():
    assert label_share([{"token": "Sure", "logprob": -0.1}]) == 0.0
    assert label_share([{"token": " ", "logprob": -0.1}]) == 0.0


def _server(top: list[tuple[str, float]], seen: list[dict]):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "verifier",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": top[0][0]},
                        "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 300, "completion_tokens": 1, "total_tokens": 301},
            },
        )

    return handler


def test_scores_through_chat_openai_with_one_token_and_logprobs():
    langchain_openai = pytest.importorskip(
        "langchain_openai", reason="langchain-openai is in the `remote` extra"
    )
    seen: list[dict] = []
    top = [("REJECT", math.log(0.7)), ("ACCEPT", math.log(0.3))]
    chat = langchain_openai.ChatOpenAI(
        model="verifier",
        base_url="http://server.invalid/v1",
        api_key="none",
        http_client=httpx.Client(transport=httpx.MockTransport(_server(top, seen))),
        max_retries=0,
    )
    draft = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
    verdict = ServedVerifier(chat).score([HumanMessage("Weather in Paris?")], [], draft)
    assert verdict.p_accept == pytest.approx(0.3)
    request = seen[0]
    assert (request["max_completion_tokens"], request["max_tokens"]) == (1, 1)
    assert (request["logprobs"], request["top_logprobs"]) == (True, 20)
    assert "get_weather" in request["messages"][1]["content"]
    assert verdict.record.role == "verifier" and verdict.record.input_tokens == 300


def _reply(accept: float) -> AIMessage:
    top = [{"token": "ACCEPT", "logprob": math.log(accept)},
           {"token": "REJECT", "logprob": math.log(1 - accept)}]  # fmt: skip
    return AIMessage(
        "ACCEPT",
        response_metadata={
            "model_name": "verifier",
            "logprobs": {"content": [{"top_logprobs": top}]},
        },
        usage_metadata={"input_tokens": 300, "output_tokens": 1, "total_tokens": 301},
    )


@pytest.mark.parametrize("run", ["score_batch", "ascore_batch"])
def test_one_call_per_draft_sync_and_async(run):
    """Each draft is one call with the verifier prompt; its verdict is the label share and its
    record bills the verifier, in order, sync or async."""
    import asyncio

    chat = GenericFakeChatModel(messages=iter([_reply(0.8), _reply(0.25)]))
    verifier = ServedVerifier(chat, top_logprobs=5)
    assert verifier.asked.kwargs["top_logprobs"] == 5 and verifier.asked.kwargs["max_tokens"] == 1
    drafts = [ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": c})])
              for c in ("Paris", "Lyon")]  # fmt: skip
    args = ([HumanMessage("Weather in Paris?")], [], drafts)
    verdicts = (
        asyncio.run(verifier.ascore_batch(*args)) if run == "ascore_batch"
        else verifier.score_batch(*args)
    )  # fmt: skip
    assert [round(v.p_accept, 6) for v in verdicts] == [0.8, 0.25]
    assert all(v.record.role == "verifier" and v.record.input_tokens == 300 for v in verdicts)
