"""Task data, from downloaded files to token ids.

    formats/                  the task formats, one module each, and their registry (FORMATS)
    parlai_reader.py          ParlAI's ConvAI2 self_original files -> records (the convai2 format's downloads)
    metamath_reader.py        MetaMathQA json, GSM8K json / jsonl -> records (the gsm8k format's downloads)
    prepare.py, layout.py     downloads -> the prepared layout data/<folder>/ every task config reads
    records.py                reading and checking the record files
    synthetic_world.py        the synthetic world: the tiny base's facts, its pretraining text, the commonsense
                              stand-in's questions
    synthetic_math_dialogue.py  the math and dialogue stand-ins, written as the real downloads and read by the
                              readers above
    tasks.py                  the run's training, validation and test records
    templates.py, tokenize.py the Alpaca prompt; records -> token ids and loss labels
"""
