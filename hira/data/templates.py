"""The Alpaca prompt template used by HiRA, LLM-Adapters and the other anchors."""

NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The prompt up to and including "### Response:\\n"; the model's answer follows it."""
    template = WITH_INPUT if input else NO_INPUT
    return template.format(instruction=instruction, input=input)
