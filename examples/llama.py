"""The main job: torch.compile a Llama-style model with backend="llm" and report what the backend did.

python examples/llama.py                 # tiny, CPU-friendly
python examples/llama.py --large         # Llama-3-8B layer shapes, 2 layers, bf16 (GPU)
"""

import argparse

import torch
import transformers

import llm_inductor

ap = argparse.ArgumentParser()
ap.add_argument("--large", action="store_true", help="Llama-3-8B layer shapes (needs a GPU)")
ap.add_argument("--train", action="store_true", help="also run a training step")
args = ap.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
if args.large:
    cfg = transformers.LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=2,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    dtype, shape = torch.bfloat16, (4, 2048)
else:
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
    )
    dtype, shape = torch.float32, (2, 32)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(cfg).to(device, dtype)
ids = torch.randint(0, cfg.vocab_size, shape, device=device)

compiled = torch.compile(model, backend="llm")
with torch.no_grad():
    expected = model(ids).logits
    got = compiled(ids).logits
err = (got.float() - expected.float()).abs().max().item()
print(f"max |llm - eager| = {err:.3g}")
if args.train:
    compiled(ids, labels=ids).loss.backward()

stats = llm_inductor.stats()
print("backend stats:", ", ".join(f"{k}={v}" for k, v in stats.items()))
pending = llm_inductor.open_cache().pending()
print(f"{len(pending)} hot region(s) pending for `llm-inductor tune --pending`:")
for rec in pending[:10]:
    print(f"  {rec.key[:16]}  {rec.share:6.1%}  {', '.join(rec.ops[:8])}")
