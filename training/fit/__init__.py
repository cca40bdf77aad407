"""What every model's fit shares: training examples, the loop (early stopping, time budget), the
loss functions, weight averaging and data-parallel training."""
