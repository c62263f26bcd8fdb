"""Training one fold and running many: fold jobs and results, the training loop (Ray-free), the
fold runner (in process, or Ray Train workers per fold slot), LOSO planning, the shared trunk
tokens, augmentation and summaries."""
