"""Search under DistributedDataParallel: two CPU processes (gloo); τ must stay identical on all ranks."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from einops import rearrange
from torch import nn

from img2vid.search import Architect, derive_genotype, network_parameters, searchable_stem

WORLD = 2


class _Net(nn.Module):
    """(B, T, C, H, W) -> frame-averaged logits; defined here so spawned workers can unpickle it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, clip):
        T = clip.shape[1]
        x = torch.relu(self.bn(self.conv(rearrange(clip, "b t c h w -> (b t) c h w")))).mean(dim=(-2, -1))
        return rearrange(self.head(x), "(b t) k -> b t k", t=T).mean(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
        model = nn.Sequential(searchable_stem(["identity", "translate_x", "rotate"], 3, nodes=2), _Net())
        ddp = nn.parallel.DistributedDataParallel(model)
        stem = model[0]
        tau0 = stem.tau.detach().clone()
        loss_fn = nn.CrossEntropyLoss()
        w_opt = torch.optim.SGD(network_parameters(model), lr=0.05, momentum=0.9)
        architects = {
            "first": Architect(ddp, loss_fn, optimizer=torch.optim.Adam(stem.arch_parameters(), lr=0.05)),
            "second": Architect(ddp, loss_fn, order="second", network_optimizer=w_opt,
                                optimizer=torch.optim.Adam(stem.arch_parameters(), lr=0.05)),
        }
        generator = torch.Generator().manual_seed(rank)  # each rank sees its own data
        local_grads = []
        for step in range(4):
            train = (torch.rand(4, 3, 8, 8, generator=generator), torch.randint(0, 3, (4,), generator=generator))
            val = (torch.rand(4, 3, 8, 8, generator=generator), torch.randint(0, 3, (4,), generator=generator))
            if step == 0:  # what each rank would do alone
                local_grads.append(torch.autograd.grad(loss_fn(model(val[0]), val[1]), stem.tau)[0])
            architects["second" if step % 2 else "first"].step(train, val)
            w_opt.zero_grad()
            loss_fn(ddp(train[0]), train[1]).backward()
            w_opt.step()

        x_eval = torch.rand(4, 3, 8, 8, generator=generator)
        y_eval = torch.randint(0, 3, (4,), generator=generator)

        @torch.no_grad()
        def evaluate():
            correct = (model(x_eval).argmax(1) == y_eval).float().sum() - loss_fn(model(x_eval), y_eval)
            dist.all_reduce(correct)  # one score for all ranks, so all make the same choice
            return correct

        genotype = derive_genotype(stem, evaluate, progress=False)
        torch.save({"tau0": tau0, "tau": stem.tau.detach(), "weight": model[1].conv.weight.detach(),
                    "local_grad": local_grads[0], "genotype": str(genotype)}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_tau_stays_identical_on_all_ranks(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD)]
    a, b = results
    assert not torch.equal(a["local_grad"], b["local_grad"])  # the ranks' data really differ ...
    assert not torch.equal(a["tau"], a["tau0"])  # ... τ moved ...
    assert torch.equal(a["tau"], b["tau"])  # ... and stayed identical, bit for bit
    assert torch.equal(a["weight"], b["weight"])
    assert a["genotype"] == b["genotype"]
