"""Four requests at once, each with its own constraint (two structured
outputs with different schemas, two forced calls of different tools, one
with log-probabilities): they share the ranks' batches, and each answer
still satisfies its own constraint and nobody else's."""

import json
import threading
import time

import httpx
import openai
from pydantic import BaseModel, ConfigDict, Field
from typing import Literal

from common import *

c = openai.OpenAI(base_url=f"http://{API}/v1", api_key=KEY, timeout=300, max_retries=0)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: Literal["yes", "no"]
    confidence: int = Field(ge=0, le=100)


ASK_VERDICT = [{"role": "user", "content": "Is Paris the capital of France?"}]


def owner(seed):
    r = c.beta.chat.completions.parse(
        model=MODEL, messages=ASK_OWNER, response_format=Owner, max_tokens=400, temperature=0.8, seed=seed,
    )
    check(r.choices[0].finish_reason == "stop", r)
    check(isinstance(r.choices[0].message.parsed, Owner), r)
    check(r.choices[0].logprobs is None, r)


def verdict(seed):
    r = c.beta.chat.completions.parse(
        model=MODEL, messages=ASK_VERDICT, response_format=Verdict, max_tokens=100, temperature=0.8, seed=seed,
        logprobs=True, top_logprobs=2,
    )
    check(r.choices[0].finish_reason == "stop", r)
    check(isinstance(r.choices[0].message.parsed, Verdict), r)
    lp = r.choices[0].logprobs.content
    check(len(lp) == r.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in lp), lp)


def call(tool, args_model, seed):
    r = c.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": tool}},
        max_tokens=200, temperature=0.8, seed=seed,
    )
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls", r)
    check(len(m.tool_calls) == 1 and m.tool_calls[0].function.name == tool, m)
    args_model.model_validate_json(m.tool_calls[0].function.arguments)
    check(r.choices[0].logprobs is None, r)


most_running = 0
done = threading.Event()


def watch():
    global most_running
    while not done.is_set():
        h = httpx.get(f"http://{API}/health").json()
        most_running = max(most_running, h.get("running", 0))
        time.sleep(0.05)


watcher = threading.Thread(target=watch)
watcher.start()
errors = []
rounds = 3
started = time.time()
for i in range(rounds):
    jobs = [
        lambda: owner(i),
        lambda: verdict(i),
        lambda: call("get_weather", WeatherArgs, i),
        lambda: call("get_time", TimeArgs, i),
    ]

    def run(job):
        try:
            job()
        except Exception as e:  # reported below, with the others
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
done.set()
watcher.join()
check(not errors, "\n".join(errors))
check(most_running >= 2, f"at most {most_running} request(s) ran at once")
print(f"concurrent: {rounds} rounds of 4 differently constrained requests, all valid; "
      f"up to {most_running} running at once; {time.time() - started:.1f} s")
print("OK")
