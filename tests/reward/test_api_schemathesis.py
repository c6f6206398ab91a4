"""Acceptance: schemathesis, driven by the server's own OpenAPI document, finds no 5xx.

Positive and negative cases for every operation (with the token), against a real server on
127.0.0.1; the responses must match the document too (status codes, content types, bodies).
The document is built by the same `create_app` the server runs (schemathesis's lazy
fixture loader does not work with pytest 9), and a test checks that the running server
serves exactly that document.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from reward.batching import BatchSettings
from reward.server import LoadedModel, ServerSettings, create_app, load_model

from .serving import TOKEN, auth, running


def server_settings() -> ServerSettings:
    return ServerSettings(token=TOKEN, batch=BatchSettings(max_wait_ms=1), max_tokens=256, max_inputs=32,
                          max_body_bytes=32 * 1024)


# The app only reads its models when it starts; the document needs their names alone.
DOCUMENT = create_app([LoadedModel("tiny-rm", None, None)], server_settings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=30)
# 413 is the right answer to schema-valid data over the server's size limits: an input's
# token count depends on the tokenizer and cannot be written into a JSON schema.
_accept = schema.config.checks.positive_data_acceptance
_accept.expected_statuses = [*_accept.expected_statuses, "413"]


@pytest.fixture(scope="module")
def base_url(tiny_rm):
    with running(create_app([load_model("tiny-rm", str(tiny_rm))], server_settings())) as url:
        yield url


def test_the_server_serves_the_document_under_test(base_url):
    assert httpx.get(f"{base_url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_openapi_cases_get_no_5xx_and_match_the_document(case, base_url):
    case.call_and_validate(base_url=base_url, headers=auth(), timeout=30)
