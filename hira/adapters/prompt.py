"""Prompt Tuning (Lester et al., 2021) and P-Tuning (Liu et al., 2021) through peft: model-level methods.

Both prepend `num_virtual_tokens` trainable embeddings to every input: prompt tuning learns them directly, P-tuning
produces them with a small MLP prompt encoder (encoder_hidden_size, peft's default: the model's hidden size). peft
wraps the model (PeftModelForCausalLM), which then trains, decodes and saves through our loop and evaluator like
any other method; nothing here is merged (there is no weight update to merge).

The paper does not state their sizes; the defaults (20 virtual tokens) follow peft's examples, and the parameter
counter prints the resulting percentage next to the adapters'.
"""

from __future__ import annotations

from torch import nn

from hira.adapters.base import AdapterConfigError, register_model_method


def _wrap(model: nn.Module, config) -> nn.Module:
    from peft import get_peft_model

    model.requires_grad_(False)
    return get_peft_model(model, config)


def _check_targets(method: str, target_modules) -> None:
    if target_modules:
        raise AdapterConfigError(f"method={method} adapts the input, not linear layers: set method.target_modules=[]")


@register_model_method("prompt_tuning")
def prompt_tuning(model: nn.Module, target_modules, num_virtual_tokens: int = 20) -> nn.Module:
    from peft import PromptTuningConfig, TaskType

    _check_targets("prompt_tuning", target_modules)
    return _wrap(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens))


@register_model_method("p_tuning")
def p_tuning(model: nn.Module, target_modules, num_virtual_tokens: int = 20, encoder_hidden_size: int | None = None,
             encoder_reparameterization_type: str = "MLP") -> nn.Module:
    from peft import PromptEncoderConfig, TaskType

    _check_targets("p_tuning", target_modules)
    config = PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens,
                                 encoder_hidden_size=encoder_hidden_size or model.config.hidden_size,
                                 encoder_reparameterization_type=encoder_reparameterization_type)
    return _wrap(model, config)
