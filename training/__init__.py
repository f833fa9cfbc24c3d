"""CNN models, training and evaluation used by the ``genaug train`` CLI."""
