"""Training on accelerate: the loop (trainer), optimizer and schedule (optim), batch plan
(batching), checkpoints (checkpoint), throughput/MFU and metrics.jsonl (metrics), wandb,
progress and run.json (tracking), the process group and the one function that wraps the model
(distributed), and the DDP/FSDP2/DeepSpeed strategies it chooses from (strategies).

    from ibnorm_llm.train.trainer import train
    result = train(load_config("llama_tiny_ibnorm_l", ["train.max_steps=50"]))
"""
