"""The real `ollama` client against skulk: list, show, ps, chat and
generate (streamed and whole), structured output, tools, logprobs,
errors."""

import httpx
import ollama

from common import *

auth = {"Authorization": f"Bearer {KEY}"}
c = ollama.Client(host=f"http://{API}", headers=auth)
opts = {"temperature": 0, "num_predict": 16}
hello = [{"role": "user", "content": "Say hello."}]

models = c.list().models
check([m.model for m in models] == [MODEL], models)
check(models[0].details.format == "gguf" and models[0].size > 0, models)
check(any(m.model == MODEL for m in c.ps().models), c.ps())
show = c.show(MODEL)
check("completion" in show.capabilities and "tools" in show.capabilities, show)
check(httpx.get(f"http://{API}/api/version", headers=auth).json()["version"], "version")

r = c.chat(model=MODEL, messages=hello, options=opts, stream=False)
check(r.done and r.message.role == "assistant" and r.message.content, r)
check(r.eval_count > 0 and r.prompt_eval_count > 0 and r.done_reason in ("stop", "length"), r)
chunks = list(c.chat(model=MODEL, messages=hello, options=opts, stream=True))
check("".join(ch.message.content for ch in chunks) == r.message.content, chunks)
check(chunks[-1].done and not any(ch.done for ch in chunks[:-1]), chunks)

g = c.generate(model=MODEL, prompt="The capital of France is", options=opts, stream=False)
check(g.done and g.response, g)
parts = [ch.response for ch in c.generate(model=MODEL, prompt="The capital of France is", options=opts, stream=True)]
check("".join(parts) == g.response, (parts, g.response))
raw = c.generate(model=MODEL, prompt="1, 2, 3,", raw=True, options=opts, stream=False)
check(raw.response, raw)

# Structured output from a pydantic model's schema, at temperature 0.8.
for seed in range(3):
    r = c.chat(model=MODEL, messages=ASK_OWNER, format=Owner.model_json_schema(),
               options={"temperature": 0.8, "seed": seed, "num_predict": 400}, stream=False)
    check(r.done_reason == "stop", r)
    Owner.model_validate_json(r.message.content)

# Tools: a call the model makes is valid (Ollama has no forced choice).
r = c.chat(model=MODEL, messages=ASK_WEATHER, tools=[WEATHER_TOOL], options={"temperature": 0, "num_predict": 120}, stream=False)
for tc in r.message.tool_calls or []:
    WeatherArgs.model_validate(tc.function.arguments)

r = c.chat(model=MODEL, messages=hello, options=opts, stream=False, logprobs=True, top_logprobs=2)
check(len(r.logprobs) == r.eval_count and all(len(l.top_logprobs) == 2 for l in r.logprobs), r.logprobs)

try:
    c.chat(model=MODEL, messages=hello, options={"repeat_penalty": 1.3}, stream=False)
    raise AssertionError("repeat_penalty was accepted")
except ollama.ResponseError as e:
    check(e.status_code == 400 and "options.repeat_penalty" in e.error, e)
try:
    ollama.Client(host=f"http://{API}").list()
    raise AssertionError("no key was accepted")
except ollama.ResponseError as e:
    check(e.status_code == 401, e)
print("OK")
