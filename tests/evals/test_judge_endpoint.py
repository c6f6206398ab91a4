"""The evaluate stage's LLM judge through the `openai` backend's client, against an
OpenAI-compatible server on loopback.

The server is a stand-in: no chat model that could judge is available offline, and a tiny
random one would answer at random. It answers like a judge that knows the right reply
("yellow"): the response that says it wins, whichever position it is shown in, except on
one prompt where it always picks the first shown (an order effect the both-orders rule
must turn into a tie).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest

from rlhf.core.types import Completion, PromptRow
from rlhf.pipeline.config import validate
from rlhf.pipeline.stages.evaluate import _judge
from tests.stand_in import http_stand_in


class Judge(BaseHTTPRequestHandler):
    asked: list[dict] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"data": [{"id": "judge-model"}]})

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Judge.asked.append(req)
        text = req["messages"][-1]["content"]
        a = text.split("[Response A]\n")[1].split("\n\n")[0]
        if "biased" in text:
            verdict = "A"
        else:
            verdict = "A" if "yellow" in a.lower() else "B"
        self._send({"choices": [{"message": {"content": verdict}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1}})


@pytest.fixture
def judge_url():
    with http_stand_in(Judge) as base:
        yield f"{base}/v1"


def test_judge_win_rates_through_the_openai_client(judge_url: str) -> None:
    Judge.asked.clear()
    cfg = validate({"evals": {"judge": {"enabled": True, "base_url": judge_url, "max_pairs": 3,
                                        "backoff_seconds": 0.01}}})
    rows = [PromptRow(1, [{"role": "user", "content": "What color is a lemon?"}]),
            PromptRow(2, [{"role": "user", "content": "biased question"}])]
    outputs = {
        10: [Completion(1, 0, "green", 1, 1, "stop"), Completion(1, 1, "green", 1, 1, "stop"),
             Completion(2, 0, "x", 1, 1, "stop")],
        11: [Completion(1, 0, "Yellow.", 1, 1, "stop"), Completion(1, 1, "blue", 1, 1, "stop"),
             Completion(2, 0, "y", 1, 1, "stop")],
    }
    got = _judge(SimpleNamespace(cfg=cfg), rows, outputs, 10, [SimpleNamespace(id=11)])
    # Pair 1: candidate right in both orders (win); pair 2: neither says yellow, so the judge
    # picks B both times: one verdict each way (tie); pair 3: always "A" (tie).
    assert got[11] == {"win_rate": pytest.approx((1 + 0.5 + 0.5) / 3), "pairs": 3, "unreadable": 0,
                       "inconsistent": 2}
    assert len(Judge.asked) == 6
    assert {r["model"] for r in Judge.asked} == {"judge-model"} and all(r["max_tokens"] == 8 for r in Judge.asked)
    assert all(r["temperature"] == 0.0 for r in Judge.asked)
