"""Margin and MASE at large batches: 2,000,000 x 600 float32 logits, B = 10K, 100K, 1M, against
one numpy pass (the floor); medians of 3. Needs ~5 GB of memory. No arguments:

    python benchmarks/topk_large_b.py

Data and timer: the harness (alscale.al.harness: ``gaussian`` logits, ``time_call`` medians)."""
import alscale
from alscale.al.harness import gaussian, time_call
L = gaussian(2_000_000, 600, seed=0)
def t(f, r=3):
    return time_call(f, r, warmup=0)[0].median
floor = t(lambda: L.sum())
print(f"floor {floor:.3f}")
for B in (10_000, 100_000, 1_000_000):
    m = t(lambda: alscale.select_margin(L, B))
    b = t(lambda: alscale.select_boundary(L, B))
    print(f"B={B}: margin {m:.3f} ({m/floor:.2f}x)  MASE {b:.3f} ({b/floor:.2f}x)")
s = t(lambda: alscale.margin_scores(L)); print(f"margin_scores alone {s:.3f} ({s/floor:.2f}x)")
