"""`model.chat_template` replaces a policy's own template wherever the policy is loaded for sampling."""

from __future__ import annotations

from policy.backends import open_backend
from policy.config import GenerationConfig
from rlhf.core.chat import prompt_ids
from rlhf.core.models import ModelConfig, load_policy, policy_tokenizer

TEMPLATE = "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<<a>>{% endif %}"
ASK = [{"role": "user", "content": "What color is a banana?"}]


def test_the_override_renders_prompts_in_every_transformers_load_path(chat_model, tmp_path):
    (tmp_path / "template.jinja").write_text(TEMPLATE)
    own = policy_tokenizer(str(chat_model), None, ModelConfig())
    inline = policy_tokenizer(str(chat_model), None, ModelConfig(chat_template=TEMPLATE))
    from_file = policy_tokenizer(str(chat_model), tmp_path, ModelConfig(chat_template="template.jinja"))
    expected = inline("<<user>>What color is a banana?<<a>>", add_special_tokens=False)["input_ids"]
    assert prompt_ids(inline, ASK) == prompt_ids(from_file, ASK) == expected
    assert prompt_ids(own, ASK) != expected

    _, tok = load_policy(str(chat_model), tmp_path, ModelConfig(chat_template="template.jinja"))
    assert tok.chat_template == TEMPLATE
    backend = open_backend(str(chat_model), cfg=GenerationConfig(backend="transformers"),
                           model_cfg=ModelConfig(chat_template="template.jinja"), root=tmp_path)
    assert backend.tokenizer.chat_template == TEMPLATE
