"""The real `anthropic` client against skulk: messages, streaming events,
stop sequences, forced tool use and a tool round trip, errors."""

import anthropic

from common import *

# Recent clients (2.x) dropped `temperature` from `messages.create`; the
# Messages API still takes it, so it goes in the body as is.
c = anthropic.Anthropic(base_url=f"http://{API}", api_key=KEY, timeout=300, max_retries=0)
hello = [{"role": "user", "content": "Say hello."}]

m = c.messages.create(model=MODEL, max_tokens=16, extra_body={"temperature": 0}, system="You are terse.", messages=hello)
check(m.type == "message" and m.role == "assistant" and m.id.startswith("msg_"), m)
check(m.content[0].type == "text" and m.content[0].text, m)
check(m.stop_reason in ("end_turn", "max_tokens"), m)
check(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m)

# Streaming: the helper's text equals the whole answer; the events come in
# Anthropic's order.
with c.messages.stream(model=MODEL, max_tokens=16, extra_body={"temperature": 0}, system="You are terse.", messages=hello) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check(text == m.content[0].text == final.content[0].text, (text, m.content[0].text))
kinds = [e.type for e in c.messages.create(model=MODEL, max_tokens=16, extra_body={"temperature": 0}, system="You are terse.", messages=hello, stream=True)]
check(kinds[0] == "message_start" and kinds[-1] == "message_stop" and kinds[-2] == "message_delta", kinds)
check(kinds.index("content_block_start") < kinds.index("content_block_delta") < kinds.index("content_block_stop"), kinds)

# A stop sequence that is bound to come: the answer stops there.
m = c.messages.create(model=MODEL, max_tokens=40, extra_body={"temperature": 0}, messages=hello, stop_sequences=[" "])
check(m.stop_reason == "stop_sequence" and m.stop_sequence == " ", m)
check(" " not in m.content[0].text, m)

# Forced tool use, whole and streamed: the input validates.
tools = [{"name": "get_weather", "description": "The weather forecast for a city", "input_schema": WEATHER_SCHEMA}]
forced = {"type": "tool", "name": "get_weather"}
m = c.messages.create(model=MODEL, max_tokens=200, extra_body={"temperature": 0.8}, messages=ASK_WEATHER, tools=tools, tool_choice=forced)
check(m.stop_reason == "tool_use", m)
use = [b for b in m.content if b.type == "tool_use"]
check(len(use) == 1 and use[0].name == "get_weather" and use[0].id.startswith("toolu_"), m)
WeatherArgs.model_validate(use[0].input)
with c.messages.stream(model=MODEL, max_tokens=200, extra_body={"temperature": 0.8}, messages=ASK_WEATHER, tools=tools, tool_choice=forced) as s:
    final = s.get_final_message()
streamed = [b for b in final.content if b.type == "tool_use"]
check(len(streamed) == 1 and final.stop_reason == "tool_use", final)
WeatherArgs.model_validate(streamed[0].input)

# The round trip: the tool's result goes back, the model answers in text.
m2 = c.messages.create(
    model=MODEL, max_tokens=32, extra_body={"temperature": 0}, tools=tools,
    messages=ASK_WEATHER + [
        {"role": "assistant", "content": m.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": "Sunny, 21 degrees."}]},
    ],
    tool_choice={"type": "none"},
)
check(m2.content and m2.content[0].type == "text", m2)

# Errors in Anthropic's shape.
try:
    c.messages.create(model=MODEL, max_tokens=16, extra_body={"temperature": 1.5}, messages=hello)
    raise AssertionError("temperature 1.5 was accepted")
except anthropic.BadRequestError as e:
    check(e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", e.body)
    check("`temperature`" in e.body["error"]["message"], e.body)
try:
    c.messages.create(model=MODEL, max_tokens=16, messages=hello, thinking={"type": "enabled", "budget_tokens": 1024})
    raise AssertionError("thinking was accepted")
except anthropic.BadRequestError as e:
    check(MODEL in e.body["error"]["message"], e.body)
try:
    anthropic.Anthropic(base_url=f"http://{API}", api_key="wrong", max_retries=0).messages.create(
        model=MODEL, max_tokens=4, messages=hello)
    raise AssertionError("a wrong key was accepted")
except anthropic.AuthenticationError as e:
    check(e.body["error"]["type"] == "authentication_error", e.body)
print("OK")
