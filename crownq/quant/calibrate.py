"""GPTQ calibration: H = X^T X / n of the inputs of every quantisable linear, from a few batches.

Linears that read the very same input tensor (q, k and v of one attention) share one accumulation
and return the same Hessian object, which GPTQ then exploits by stacking their rows.
"""

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from crownq.progress import Progress


@torch.no_grad()
def collect_hessians(model: nn.Module, batches: Iterable, damp: float = 0.0, progress: bool = True,
                     total: int | None = None, head: bool = False) -> dict[str, Tensor]:
    """{f"{prefix}.weight": H [K, K] fp32} for each of model.quantizable_linears().

    `head`: also the Hessian of the output head's input (the final-normed hidden state, `model.hidden`),
    keyed by the head's weight: `tok_emb.weight` with tied embeddings (the frontier's embedding GPTQ),
    else `lm_head.weight`. The batches then run `model.hidden` (the same blocks, no logits).

    `batches` yields input ids [B, T] or (input ids, targets) pairs; the model's own forward runs them.
    H is the mean of x x^T over all input rows (per batch in fp32, summed in fp64); damp > 0 adds
    damp * mean(diag) to the diagonal (GPTQ adds its own quantizer.damp on top, so pass 0 unless you
    want both).
    """
    linears = model.quantizable_linears()
    if not linears:
        raise ValueError("collect_hessians: model.quantizable_linears() is empty")
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    alias: dict[str, str] = {}  # name -> owner whose accumulation it shares
    # The last input seen and its reader. Holding the tensor keeps its memory from being reused by
    # another tensor of the same shape, so a matching (address, shape, version) means the same input.
    last: dict[str, object] = {"x": None, "name": None}

    def hook_for(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            prev = last["x"]
            if (prev is not None and last["name"] != name and prev.data_ptr() == x.data_ptr()
                    and prev.shape == x.shape and prev._version == x._version):
                alias.setdefault(name, last["name"])
                return
            last["x"], last["name"] = x, name
            x2 = x.reshape(-1, x.shape[-1]).float()
            if name not in sums:
                sums[name] = torch.zeros(x2.shape[1], x2.shape[1], dtype=torch.float64, device=x2.device)
                counts[name] = 0
            # One batch's X^T X in fp32 (fast everywhere; fp64 matmul is slow on CPUs and most GPUs),
            # summed across batches in fp64 so long calibrations do not lose the small increments.
            sums[name] += (x2.T @ x2).double()
            counts[name] += x2.shape[0]
        return hook

    head_sum: list[Tensor] = []
    head_rows = [0]
    if head and not hasattr(model, "hidden"):
        raise ValueError("collect_hessians(head=True): the model has no hidden() (the output head's input)")

    def head_input(x: Tensor) -> None:
        x2 = x.detach().reshape(-1, x.shape[-1]).float()
        if not head_sum:
            head_sum.append(torch.zeros(x2.shape[1], x2.shape[1], dtype=torch.float64, device=x2.device))
        head_sum[0] += (x2.T @ x2).double()
        head_rows[0] += x2.shape[0]

    handles = [m.register_forward_pre_hook(hook_for(name)) for name, m in linears]
    was_training = model.training
    model.eval()
    try:
        with Progress("calibration", total=total, unit="batches", enabled=progress) as shown:
            for batch in batches:
                _run_batch(model, batch, last, head_input if head else None)
                shown.update(1)
    finally:
        last["x"] = None
        for h in handles:
            h.remove()
        model.train(was_training)
    out: dict[str, Tensor] = {}
    for name, _ in linears:
        owner = alias.get(name, name)
        if owner not in sums:
            raise ValueError(f"collect_hessians: linear '{name}' never ran (no calibration batches?)")
        key = f"{owner}.weight"
        if key not in out:
            h = (sums[owner] / max(counts[owner], 1)).float()
            if damp > 0:
                h.diagonal().add_(damp * h.diagonal().mean())
            out[key] = h
        out[f"{name}.weight"] = out[key]
    if head:
        if not head_sum:
            raise ValueError("collect_hessians: no calibration batches reached the output head")
        h = (head_sum[0] / max(head_rows[0], 1)).float()
        if damp > 0:
            h.diagonal().add_(damp * h.diagonal().mean())
        out["lm_head.weight" if getattr(model, "lm_head", None) is not None else "tok_emb.weight"] = h
    return out


def _run_batch(model: nn.Module, batch, last: dict[str, object], head_input=None) -> None:
    last["x"] = None
    if head_input is not None:
        head_input(model.hidden(batch[0] if isinstance(batch, tuple | list) else batch))
    elif isinstance(batch, tuple | list):
        model(*batch)
    else:
        model.logits(batch) if hasattr(model, "logits") else model(batch)


def share_hessians(hessians: dict[str, Tensor] | None, src: int = 0, device: torch.device | None = None
                   ) -> dict[str, Tensor]:
    """Broadcast rank `src`'s Hessians to every rank (identity with torch.distributed uninitialised).

    Rank src computes (collect_hessians), the others pass None and wait here; shared Hessians stay
    shared (one tensor sent per distinct Hessian).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if hessians is None:
            raise ValueError("share_hessians: no Hessians and no process group to receive them from")
        return hessians
    rank = dist.get_rank()
    device = device or (torch.device("cuda", torch.cuda.current_device())
                        if dist.get_backend() == "nccl" else torch.device("cpu"))
    if rank == src:
        distinct: list[Tensor] = []
        index: dict[str, int] = {}
        for name, h in hessians.items():
            pos = next((i for i, d in enumerate(distinct) if d is h), None)
            if pos is None:
                distinct.append(h)
                pos = len(distinct) - 1
            index[name] = pos
        plan = [index, [list(h.shape) for h in distinct]]
    else:
        plan = [None, None]
    dist.broadcast_object_list(plan, src=src)  # names and shapes only: plain lists and ints
    index, shapes = plan
    tensors = []
    for i, shape in enumerate(shapes):
        t = distinct[i].to(device, torch.float32) if rank == src else torch.empty(shape, device=device)
        dist.broadcast(t, src=src)
        tensors.append(t)
    return {name: tensors[i] for name, i in index.items()}
