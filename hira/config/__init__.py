"""The configuration's one typed schema and the check that runs it before anything is written or loaded.

schema.py declares every key of train.py's and eval.py's configs as pydantic dataclasses (type, choices, range);
settings.py reads the schema's marks of the keys that cannot change a result (the tables' fingerprint, resume's
check); check.py validates a composed config against it (pydantic's first error as one line) and runs the rules
that span keys; command_line.py composes what Hydra will compose from a command line and checks it before Hydra
creates any folder.
"""
