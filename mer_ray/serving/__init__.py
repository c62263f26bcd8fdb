"""Serving a trained model: the self-contained model file (``modelfile``), prediction on a
recording (``predict``), the --explain figure (``explain``) and the torch.export program
(``export``). Nothing here imports the training loop."""
