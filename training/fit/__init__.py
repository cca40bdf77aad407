"""What every model's fit shares: training examples, the loop (early stopping, time budget), the
loss functions, the full or sampled softmax, and weight averaging.
"""
