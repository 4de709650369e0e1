"""ChatModelVerifier: a scripted chat model prompted as a judge."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import Field

from spec_tool_node.actions import RespondAction, ToolCall, ToolCallsAction
from spec_tool_node.verifiers import VERIFIER_SYSTEM, ChatModelVerifier, judge_answer

CONTEXT = [HumanMessage("What's the weather in Paris?")]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
DRAFTS = [
    ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})]),
    RespondAction(content="No idea."),
    RespondAction(content="Sunny."),
]


class RecordingModel(GenericFakeChatModel):
    seen: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def scripted(*replies: AIMessage) -> RecordingModel:
    return RecordingModel(messages=iter(replies))


def test_accept_reject_and_unclear():
    model = scripted(AIMessage("ACCEPT"), AIMessage("REJECT"), AIMessage("maybe"))
    verdicts = ChatModelVerifier(model).score_batch(CONTEXT, TOOLS, DRAFTS)
    assert [v.p_accept for v in verdicts] == [1.0, 0.0, 0.0]
    assert all(v.record.purpose == "judge" and v.record.role == "strong" for v in verdicts)
    assert all(v.record.model == "RecordingModel" and v.record.wall_s >= 0 for v in verdicts)
    system, user = model.seen[0]
    assert system.content == VERIFIER_SYSTEM
    assert '{"tool_calls": [{"arguments": {"city": "Paris"}, "name": "get_weather"}]}' in (
        user.content
    )


def test_record_uses_reply_metadata():
    reply = AIMessage(
        "REJECT",
        response_metadata={"model_name": "big-8b"},
        usage_metadata={"input_tokens": 120, "output_tokens": 2, "total_tokens": 122},
    )
    verifier = ChatModelVerifier(scripted(reply), role="cheap", name="judge")
    (verdict,) = verifier.score_batch(CONTEXT, TOOLS, DRAFTS[:1])
    record = verdict.record
    assert verdict.p_accept == 0.0
    assert (record.role, record.model, record.input_tokens, record.output_tokens) == (
        "cheap",
        "big-8b",
        120,
        2,
    )


async def test_async_path():
    model = scripted(AIMessage("ACCEPT"), AIMessage("ACCEPT"), AIMessage("REJECT"))
    verdicts = await ChatModelVerifier(model, name="judge").ascore_batch(CONTEXT, TOOLS, DRAFTS)
    assert sorted(v.p_accept for v in verdicts) == [0.0, 1.0, 1.0]
    assert all(v.record.model == "judge" and v.record.purpose == "judge" for v in verdicts)


def test_answer_parsing():
    assert judge_answer("**ACCEPT** - the call is right") == 1.0
    assert judge_answer("<think>maybe ACCEPT?</think>\nREJECT") == 0.0
    assert judge_answer("The action is acceptable. Accept.") == 1.0
    assert judge_answer("I would not accept this. REJECT") == 0.0
    assert judge_answer("") == 0.0
