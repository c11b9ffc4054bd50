"""Training on accelerate: the loop (trainer), optimizer and schedule (optim), batch plan
(batching), checkpoints (checkpoint), throughput/MFU and metrics.jsonl (metrics), wandb,
progress and run.json (tracking), and Accelerator construction (distributed).

    from ibnorm_llm.train.trainer import train
    result = train(load_config("llama_tiny_ibnorm_l", ["train.max_steps=50"]))
"""
