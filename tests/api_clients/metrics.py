"""`/metrics` of rank 0 and of every other rank, read with
prometheus_client's own text-format parser."""

import os
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from common import *

auth = {"Authorization": f"Bearer {KEY}"}
# An idle link probes its latency every 2 s.
time.sleep(2.5)


def families(addr):
    r = httpx.get(f"http://{addr}/metrics", headers=auth)
    check(r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r)
    check(httpx.get(f"http://{addr}/metrics").status_code == 401, "metrics without the key")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(fam, name, **labels):
    return sum(s.value for s in fam.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


f = families(API)
req = f["skulk_requests"]
check(value(req, "skulk_requests_total", route="/v1/chat/completions", status="200") > 0, req.samples)
check(value(req, "skulk_requests_total", status="400") > 0, req.samples)
check(value(req, "skulk_requests_total", route="/v1/messages", status="200") > 0, req.samples)
check(value(req, "skulk_requests_total", route="/api/chat", status="200") > 0, req.samples)
check(value(f["skulk_prompt_tokens"], "skulk_prompt_tokens_total") > 0, "tokens in")
check(value(f["skulk_generated_tokens"], "skulk_generated_tokens_total") > 0, "tokens out")
check(f["skulk_queue_depth"].type == "gauge", f["skulk_queue_depth"])
check(value(f["skulk_time_to_first_token_seconds"], "skulk_time_to_first_token_seconds_count") > 0, "ttft")
check(value(f["skulk_inter_token_seconds"], "skulk_inter_token_seconds_count") > 0, "inter-token")
check(value(f["skulk_forward_seconds"], "skulk_forward_seconds_count", rank="0") > 0, "rank 0 forward")
if RANKS > 1:
    check(value(f["skulk_ring_hop_seconds"], "skulk_ring_hop_seconds_count", rank="0") > 0, "rank 0 hop")
for rank, addr in enumerate(filter(None, os.environ.get("SKULK_RANK_METRICS", "").split(",")), start=1):
    g = families(addr)
    check(value(g["skulk_forward_seconds"], "skulk_forward_seconds_count", rank=str(rank)) > 0, f"rank {rank} forward")
    check(value(g["skulk_ring_hop_seconds"], "skulk_ring_hop_seconds_count", rank=str(rank)) > 0, f"rank {rank} hop")
print("OK")
