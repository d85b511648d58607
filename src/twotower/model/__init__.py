"""The dual encoder: RNN towers, losses, the training loop, multi-process training and the
tokenized splits it reads. Imports everything above it but `serve`."""
