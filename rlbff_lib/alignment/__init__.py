"""Paper §6: the policy's SFT warm start, generation and checker-measured fulfilment, and GRPO with a
principle reward (scalar / BT / GenRM / served judge / verifiable checker).
"""
