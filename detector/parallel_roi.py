"""RoIAlign on every CPU core: torchvision's CPU ``roi_align`` kernel runs on one thread.

With int8 the backbone shrank to a third and the RoI head became the larger stage; inside it,
RoIAlign (torchvision's ``MultiScaleRoIAlign``) was ~70 % — 17 of 23 ms at 300 proposals on 2
AVX2 cores — and used one core while the other waited. ``ParallelRoIPool`` wraps the pooler: each
image's proposals are cut into as many slices as torch has threads, each slice goes through the
very same pooler on a thread of a small pool (torch releases the GIL inside the op), and the
outputs are put back in order. Every RoI is computed by the same kernel on the same inputs, so
the output equals the pooler's own bit for bit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

MIN_ROIS_PER_SLICE = 64  # below this a thread hand-off costs more than it saves


def _autocast_state() -> tuple[bool, torch.dtype]:
    if hasattr(torch, "get_autocast_dtype"):  # torch ≥ 2.4
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()


class ParallelRoIPool(nn.Module):
    """``pooler(features, proposals, image_shapes)`` with the proposals split across threads.

    Args:
        pooler: a RoI pooler with torchvision's ``MultiScaleRoIAlign`` call signature —
            features ``OrderedDict[str, Tensor[B, C, h, w]]``, proposals ``list[Tensor[N_i, 4]]``
            (x1, y1, x2, y2 in input pixels), image sizes ``list[(H, W)]`` → ``Tensor[ΣN_i, C, k, k]``
            in image order, then proposal order.
        threads: the most slices (default: ``torch.get_num_threads()`` at each call).
    """

    def __init__(self, pooler: nn.Module, threads: int | None = None) -> None:
        super().__init__()
        self.pooler = pooler
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.train(pooler.training)  # wrapped into an eval-mode model: stay in eval mode

    def forward(self, features, proposals: list[torch.Tensor], image_shapes):
        total = sum(len(p) for p in proposals)
        k = min(self.threads or torch.get_num_threads(), total // MIN_ROIS_PER_SLICE)
        if k < 2 or self.training or any(p.device.type != "cpu" for p in proposals):
            return self.pooler(features, proposals, image_shapes)
        slices = [[p[j * len(p) // k:(j + 1) * len(p) // k] for p in proposals] for j in range(k)]
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        autocast, dtype = _autocast_state()

        def run(part):  # the caller's thread-local modes, on the pool's thread
            with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                    torch.autocast("cpu", dtype=dtype, enabled=autocast):
                return self.pooler(features, part, image_shapes)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(2, k), thread_name_prefix="roi-align")
        outputs = list(self._pool.map(run, slices))
        # back in order: image 0's slices, then image 1's, ...
        pieces = [out.split([len(part) for part in parts]) for out, parts in zip(outputs, slices, strict=True)]
        return torch.cat([pieces[j][i] for i in range(len(proposals)) for j in range(k)])

    def __getstate__(self):  # a thread pool cannot be copied or pickled; a copy starts its own
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def __deepcopy__(self, memo):
        import copy

        clone = ParallelRoIPool(copy.deepcopy(self.pooler, memo), self.threads)
        clone.train(self.training)
        return clone
